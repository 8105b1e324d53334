package llmsandbox.launcher;

import java.io.Writer;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.function.BooleanSupplier;
import llmsandbox.launcher.SourceLaunch.Program;

/**
 * Exercises, while the spare waits, what a run goes through: javac compiling a small class that uses the common
 * language features, its loading, and a call of its main (string concatenation and lambdas bootstrap on first use).
 * In the background it gives way as soon as a run arrives: javac is abandoned at its next phase, and a run that finds
 * its program in the cache never waits for it.
 */
final class Warmup {
    private static final String SOURCE = String.join("\n",
            "import java.util.*;",
            "import java.util.stream.*;",
            "public class Warm {",
            "    record Pair(String name, int value) {}",
            "    public static void main(String[] args) throws Exception {",
            "        List<Pair> pairs = new ArrayList<>();",
            "        for (int i = 0; i < 3; i++) pairs.add(new Pair(\"p\" + i, i * 2));",
            "        Map<String, Integer> map = pairs.stream()",
            "            .filter(p -> p.value() >= 0)",
            "            .collect(Collectors.toMap(Pair::name, Pair::value));",
            "        StringBuilder out = new StringBuilder(String.format(\"%d %s\", map.size(), Arrays.toString(args)));",
            "        Runnable task = () -> out.append(Math.max(1, 2));",
            "        task.run();",
            "        if (out.length() < 0) System.out.println(out + \" \" + map);",
            "    }",
            "}",
            "");

    private final Thread thread;
    private volatile boolean stopped;

    private Warmup() {
        thread = new Thread(() -> exercise(() -> stopped), "llm-sandbox-warmup");
        thread.setDaemon(true);
    }

    static Warmup startInBackground() {
        Warmup warmup = new Warmup();
        warmup.thread.start();
        return warmup;
    }

    void stop() {
        stopped = true;
    }

    /** Compiles and runs the warm-up class; quietly gives up when {@code stop} says so or anything fails. */
    static void exercise(BooleanSupplier stop) {
        try {
            Programs.warm();
            Path file = Paths.get("/nonexistent/Warm.java");
            Program program = SourceCompiler.compile(file, SOURCE, Writer.nullWriter(), stop, false);
            if (stop.getAsBoolean()) {
                return;
            }
            ClassLoader loader = new SourceClassLoader(program.classes(), Warmup.class.getClassLoader(), file);
            Class<?> main = Class.forName(program.mainClass(), true, loader);
            main.getDeclaredMethod("main", String[].class).invoke(null, (Object) new String[0]);
        } catch (Throwable e) {
            // a warm-up that fails or is abandoned leaves the run to do the work
        }
    }
}
