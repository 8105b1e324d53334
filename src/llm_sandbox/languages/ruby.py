"""Ruby: ``ruby`` runs the code; ``gem install`` installs gems for the code.

In a sandbox the library created, gems go to the code's prefix (``/opt/llm-sandbox/user/ruby``), which is first on
the code's ``GEM_PATH`` (its trailing ``:`` keeps Ruby's default gem folders after it, so Debian's gems and an
attached container's own gem setup still load). The install reads no ``.gemrc`` (``--norc``) and installs into a
fresh folder under its fresh HOME, never loading a gem specification from the prefix (specifications are Ruby
code the code could have written), then moves the result into the prefix. Versions use gem's own
``name:version`` form (``rake:13.0.6``). A locally built ``.gem`` under the workdir is installed from the file. In
an attached container ``gem install --user-install`` runs as the container's owner set it up.
"""

from __future__ import annotations

import re

from llm_sandbox.languages.base import USER_PREFIX, Language, Spare, debian_toolchain_recipe

GEM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(?::[0-9][A-Za-z0-9.]*)?")

# "$1" is the prefix folder, "$@" then the validated gem names or local .gem paths.
GEM_INSTALL = (
    "dest=$1; shift; work=$HOME/gems; "
    'gem install --norc --no-document --install-dir "$work" --bindir "$work/bin" "$@" || exit; '
    'rm -rf "$work/cache" "$work/doc" && mkdir -p "$dest" && cp -R "$work/." "$dest/"'
)

# The spare (see ``Spare``): ``ruby -e`` with this stub waits on descriptor 3 for the code file's path, then runs
# the file at the top level as ``ruby FILE`` would (``$0``, ``__FILE__``, ``DATA``, the ``<main>`` frame, the
# failing call marked under its line). The stub's own frames are taken out of an uncaught exception's backtrace,
# and a syntax error is printed as Ruby prints one in the main file. (A backtrace the program reads itself, or
# ``caller``, still ends in the stub's frames.)
SPARE_STUB = r"""
lambda do
  hand = IO.for_fd(3, autoclose: true)
  path = hand.read.chomp
  hand.close
  exit!(0) if path.empty?
  source = File.binread(path)
  $0 = path
  Process.setproctitle("ruby " + path)  # what ps shows for ruby FILE (setting $0 made it the path alone)
  stub = __FILE__
  ending = source.match(/^__END__\r?\n/)
  if ending
    data = File.open(path)
    data.seek(ending.end(0))
    Object.const_set(:DATA, data)
  end
  RubyVM.keep_script_lines = true if RubyVM.respond_to?(:keep_script_lines=)
  begin
    eval(source, TOPLEVEL_BINDING, path, 1)
  rescue Exception => error
    trace = (error.backtrace || []).reject { |line| line.start_with?(stub + ":") }
    if error.is_a?(SyntaxError) && trace.empty?
      message = error.message
      $stderr.write(message.end_with?("\n") ? message : message + "\n")
      exit!(1)
    end
    error.set_backtrace(trace)
    raise error
  end
end.call
"""

# The default image, built FROM the common base by ``python -m llm_sandbox.images build ruby``.
IMAGE_RECIPE = debian_toolchain_recipe("ruby", "Ruby with gem", "ruby", "ruby --version && gem --version")

LANGUAGE = Language(
    name="ruby",
    file_name="main.rb",
    run=("ruby", "{file}"),
    spare=Spare(("ruby", "-e", SPARE_STUB)),
    install=("/bin/sh", "-c", GEM_INSTALL, "sh", "{prefix}/ruby", "{libraries}"),
    attached_install=("gem", "install", "--no-document", "--user-install", "{libraries}"),
    environment={"GEM_PATH": f"{USER_PREFIX}/ruby:"},
    user_bin=("{prefix}/ruby/bin",),
    library_pattern=GEM_NAME,
    library_hint="a gem name, optionally with :version, e.g. 'rake' or 'rake:13.0.6'",
    compile_error=re.compile(r"syntax errors?\b"),
    image_recipe=IMAGE_RECIPE,
    local_source=re.compile(r".+\.gem"),
    local_hint="the absolute path of a built .gem file",
)
