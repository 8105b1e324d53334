package llmsandbox.launcher;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Set;

/**
 * The JDK launcher's own stack frames, shown in place of this launcher's: an exception that escapes the program with
 * a cause or a suppressed exception prints their frames down to the launcher, and those must read as
 * {@code java File.java} prints them. The image build records the frames by running a probe under the real launcher
 * (they change with the JDK's version), one line per frame: site, class, method, file, line.
 */
final class LauncherFrames {
    static final Path RECORD = Paths.get(System.getProperty("llmsandbox.launcher.frames", "/nonexistent"));
    private static final String OWN_PACKAGE = LauncherFrames.class.getPackageName() + ".";
    private static final String MODULE = "jdk.compiler";

    /** Where the launcher called into the program: running main, or initialising its class. */
    enum Site {
        INVOKE,
        INITIALIZE
    }

    private LauncherFrames() {}

    /** Replaces this launcher's frames at the bottom of every trace in the exception's graph. */
    static void disguise(Throwable thrown, Site site) {
        List<StackTraceElement> replacement = recorded(site);
        Set<Throwable> seen = Collections.newSetFromMap(new IdentityHashMap<>());
        List<Throwable> pending = new ArrayList<>(List.of(thrown));
        while (!pending.isEmpty()) {
            Throwable current = pending.remove(pending.size() - 1);
            if (current == null || !seen.add(current)) {
                continue;
            }
            replaceOwnFrames(current, replacement);
            pending.add(current.getCause());
            pending.addAll(List.of(current.getSuppressed()));
        }
    }

    private static void replaceOwnFrames(Throwable thrown, List<StackTraceElement> replacement) {
        StackTraceElement[] trace = thrown.getStackTrace();
        int end = trace.length;
        while (end > 0 && trace[end - 1].getClassName().startsWith(OWN_PACKAGE)) {
            end--;
        }
        if (end == trace.length) {
            return;
        }
        List<StackTraceElement> frames = new ArrayList<>(List.of(trace).subList(0, end));
        frames.addAll(replacement);
        thrown.setStackTrace(frames.toArray(new StackTraceElement[0]));
    }

    private static List<StackTraceElement> recorded(Site site) {
        List<StackTraceElement> frames = new ArrayList<>();
        List<String> lines;
        try {
            lines = Files.readAllLines(RECORD, StandardCharsets.UTF_8);
        } catch (IOException e) {
            return frames; // no record: the launcher's frames are dropped rather than shown
        }
        for (String line : lines) {
            String[] field = line.split(" ");
            if (field.length == 5 && field[0].equals(site.name())) {
                // No loader name and no module version: the JDK prints neither for its own modules.
                frames.add(new StackTraceElement(
                        null, MODULE, null, field[1], field[2], field[3], Integer.parseInt(field[4])));
            }
        }
        return frames;
    }
}
