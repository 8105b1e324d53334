package llmsandbox.launcher;

import java.io.ByteArrayOutputStream;
import java.io.FileDescriptor;
import java.io.FileInputStream;
import java.io.IOException;
import java.nio.charset.Charset;

/**
 * A JVM started ahead of the next Java run: it warms the in-memory compiler while it waits, then reads one line from
 * stdin, the path of the source file, and behaves as {@code java <path>} (JDK 17 source-file mode) would.
 *
 * <p>With {@code --prepare} it only warms up and exits: the image build runs it so to record the class data sharing
 * archive the spare starts from.
 */
public final class SpareLauncher {
    private SpareLauncher() {}

    public static void main(String[] args) throws Throwable {
        if (args.length == 1 && args[0].equals("--prepare")) {
            Warmup.exercise(0, () -> false);
            return;
        }
        // A run already waiting (the spare was started late, behind a quick series of runs) is served at once.
        FileInputStream stdin = new FileInputStream(FileDescriptor.in);
        Warmup warmup = stdin.available() > 0 ? null : Warmup.startInBackground(compilerDelay());
        String path = readPath(stdin);
        if (warmup != null) {
            warmup.stop();
        }
        if (path == null) {
            return; // the helper let the spare go without a run
        }
        SourceLaunch.run(path);
    }

    /**
     * After a run that found its program in the cache, javac waits a little before it warms up: a harness that sends
     * the same code again and again has its next run meanwhile, and then javac would only take its CPU.
     */
    private static long compilerDelay() {
        return Programs.lastRunWasCached() ? 1500 : 0;
    }

    /**
     * The first line of stdin, read byte by byte from the descriptor so that nothing past it is consumed. The helper
     * closes the pipe after the line: the program then finds stdin empty, at its end, as /dev/null is in a run.
     */
    private static String readPath(FileInputStream in) throws IOException {
        ByteArrayOutputStream line = new ByteArrayOutputStream();
        int b;
        while ((b = in.read()) != -1 && b != '\n') {
            line.write(b);
        }
        if (b == -1 && line.size() == 0) {
            return null;
        }
        String encoding = System.getProperty("sun.jnu.encoding");
        return line.toString(encoding != null && Charset.isSupported(encoding) ? Charset.forName(encoding)
                : Charset.defaultCharset()); // as the java launcher decodes its arguments
    }
}
