package llmsandbox.launcher;

import java.io.InputStream;
import java.io.Writer;
import java.lang.reflect.Method;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.function.BooleanSupplier;

/**
 * Exercises, while the spare waits, what a run goes through: a cache look-up, a program's loading and the call of
 * its main, and javac compiling a small class. In the background it gives way as soon as a run arrives: javac is
 * abandoned at its next phase, and a run that finds its program in the cache never waits for it.
 */
final class Warmup {
    /** The class javac warms on: as the runs' programs, in the default package with a main. */
    private static final String SOURCE = String.join("\n",
            "import java.util.*;",
            "public class Warm {",
            "    public static void main(String[] args) {",
            "        List<String> names = new ArrayList<>(List.of(args));",
            "        names.removeIf(name -> name.isEmpty());",
            "        for (String name : names) System.out.println(\"name: \" + name);",
            "    }",
            "}",
            "");

    /** Compiles of the warm-up class: the first loads javac, the next ones give the JIT compiler its hot paths. */
    private static final int COMPILES = 2;

    private final Thread thread;
    private volatile boolean stopped;

    private Warmup(long compilerDelayMillis) {
        // Beside the main group, not in it: a program counting its threads (Thread.activeCount) while an abandoned
        // warm-up is still winding down does not count this one.
        ThreadGroup group = new ThreadGroup(Thread.currentThread().getThreadGroup().getParent(), "llm-sandbox");
        thread = new Thread(group, () -> {
            exercise(compilerDelayMillis, () -> stopped);
            if (!stopped) {
                System.gc(); // the program then finds a heap without the warm-up's garbage, as a fresh JVM's
            }
        }, "llm-sandbox-warmup");
        thread.setDaemon(true);
    }

    /**
     * Starts the warm-up; javac's part (the costly one: about a second and a half of CPU on a cold JVM, which a run
     * arriving meanwhile shares) begins only after {@code compilerDelayMillis} without a run.
     */
    static Warmup startInBackground(long compilerDelayMillis) {
        Warmup warmup = new Warmup(compilerDelayMillis);
        warmup.thread.start();
        return warmup;
    }

    void stop() {
        stopped = true;
    }

    /**
     * Runs {@link WarmProgram} as a run's program is run (a cache look-up first), then, after {@code
     * compilerDelayMillis}, has javac compile a small class {@link #COMPILES} times; quietly gives up when {@code stop}
     * says so or anything fails.
     */
    static void exercise(long compilerDelayMillis, BooleanSupplier stop) {
        try {
            Programs.warm();
            runAsProgram(WarmProgram.class);
            for (long waited = 0; waited < compilerDelayMillis && !stop.getAsBoolean(); waited += 50) {
                Thread.sleep(50);
            }
            Path file = Paths.get("/nonexistent/Warm.java");
            for (int round = 0; round < COMPILES && !stop.getAsBoolean(); round++) {
                SourceCompiler.compile(file, SOURCE, Writer.nullWriter(), stop, false);
            }
        } catch (Throwable e) {
            // a warm-up that fails or is abandoned leaves the run to do the work
        }
    }

    /** Defines {@code type}'s classes anew in a {@link SourceClassLoader} and calls their main, as a run does. */
    private static void runAsProgram(Class<?> type) throws Exception {
        Map<String, byte[]> classes = new HashMap<>();
        for (String name : List.of(type.getName(), type.getName() + "$Pair")) {
            try (InputStream in = type.getResourceAsStream("/" + name.replace('.', '/') + ".class")) {
                if (in == null) {
                    return;
                }
                classes.put(name, in.readAllBytes());
            }
        }
        ClassLoader loader = new SourceClassLoader(classes, Warmup.class.getClassLoader(), Paths.get("/nonexistent"));
        Method main = Class.forName(type.getName(), true, loader).getDeclaredMethod("main", String[].class);
        main.invoke(null, (Object) new String[0]);
    }
}
