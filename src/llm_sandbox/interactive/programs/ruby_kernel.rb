# The Ruby kernel of an interactive session: runs inside the sandbox, as the code's user, one cell per request.
#
# Started as `ruby -e <this source> READY_TAG`, it talks with the helper over its standard streams: each cell comes
# on stdin as a line `TAG SIZE` and SIZE bytes of UTF-8 source; its output goes to stdout and stderr as it is
# written; the line `\x1eTAG\x1eSTATUS` on stdout ends it (STATUS 0: completed, 1: it raised).
#
# Cells are evaluated the way irb evaluates them: `eval` on one Binding kept for the whole session (irb's workspace
# is exactly that, around TOPLEVEL_BINDING), so local variables, methods, classes and requires persist from cell to
# cell; the value of a cell is shown as irb shows it (`=> value.inspect`), except nil. irb's own loop reads a
# terminal line by line; only its evaluation model fits a cell-at-a-time kernel, and that model is Ruby's `eval`.
#
# A timed-out cell is interrupted with SIGINT, which Ruby raises in the cell as Interrupt: the cell ends like one
# that raised and the binding keeps what earlier cells defined. Between cells SIGINT is ignored.

END_MARK = "\x1e"
ready_tag = ARGV.last
ARGV.clear # a cell's gets reads its stdin, not files named by the kernel's arguments
requests = IO.new(0).dup
requests.binmode
$stdin.reopen(File::NULL) # a cell's gets or STDIN.read cannot drain the requests
$stdout.sync = true
$stderr.sync = true
Signal.trap("INT", "IGNORE")
workspace = TOPLEVEL_BINDING
count = 0

def end_cell(tag, status)
  $stdout.flush
  $stderr.flush
  $stdout.write("#{END_MARK}#{tag}#{END_MARK}#{status}\n")
end

def report(error, file)
  return $stderr.write("#{error.message} (#{error.class})\n") if error.is_a?(ScriptError)

  # The frames of the cell only: this kernel's own are not the user's concern.
  frames = (error.backtrace || []).select { |line| line.start_with?(file) }
  error.set_backtrace(frames)
  $stderr.write(error.full_message(highlight: false, order: :top))
end

end_cell(ready_tag, "ruby")
while (header = requests.gets)
  tag, size = header.split(" ")
  source = (requests.read(size.to_i) || "").force_encoding(Encoding::UTF_8)
  count += 1
  file = "(cell-#{count})"
  status = 1
  begin
    Signal.trap("INT", "DEFAULT")
    begin
      value = workspace.eval(source, file, 1)
    ensure
      Signal.trap("INT", "IGNORE")
    end
    $stdout.write("=> #{value.inspect}\n") unless value.nil?
    status = 0
  rescue SystemExit => error
    $stderr.write("SystemExit: #{error.status}\n")
    status = error.status.zero? ? 1 : error.status
  rescue Exception => error # rubocop:disable Lint/RescueException - the kernel outlives whatever a cell raised
    report(error, file)
  end
  end_cell(tag, status)
end
