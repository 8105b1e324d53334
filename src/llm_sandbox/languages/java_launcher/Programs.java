package llmsandbox.launcher;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.File;
import java.io.IOException;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.nio.charset.Charset;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Arrays;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.Map;
import llmsandbox.launcher.SourceLaunch.LaunchFault;
import llmsandbox.launcher.SourceLaunch.Program;

/**
 * Compiled programs, through a cache: identical code, which evaluation harnesses send again and again, is compiled
 * once per sandbox. The key is made of the source, the file's name (the classes record it), the class path's jars
 * with their sizes and times, the charset and the JDK. Only compiles javac had nothing to say about are kept (a
 * warning names the run's own folder), and never one with a folder on the class path (its classes can change
 * unseen). The cache lives in the code's own temporary folder, like the C++ and Go caches: what a run puts there can
 * only mislead the same user's later runs, a reset empties it, the disk cap counts it, and it is pruned to the
 * newest {@link #KEEP} programs.
 */
final class Programs {
    static final Path CACHE = Paths.get("/tmp/.llm-sandbox-java-cache");
    static final int KEEP = 32;
    private static final Path LAST_RUN_CACHED = CACHE.resolve(".last-run-cached");
    private static final int FORMAT = 1;

    private Programs() {}

    static Program compiled(Path file, UserClassPath classPath) throws LaunchFault {
        String source = SourceCompiler.read(file);
        String key = classPath.hasFolders() ? null : key(file, source, classPath);
        Program cached = key == null ? null : load(key);
        noteLastRun(cached != null);
        if (cached != null) {
            return cached;
        }
        ObservedWriter report = new ObservedWriter(new OutputStreamWriter(System.err));
        Program program;
        try {
            program = SourceCompiler.compile(file, source, report, () -> false, true);
        } finally {
            report.flush();
        }
        if (key != null && !report.written) {
            store(key, program);
        }
        return program;
    }

    /**
     * Whether the last run found its program in the cache (a hint for the next spare's warm-up).
     */
    static boolean lastRunWasCached() {
        return Files.exists(LAST_RUN_CACHED);
    }

    private static void noteLastRun(boolean cached) {
        try {
            if (!cached) {
                Files.deleteIfExists(LAST_RUN_CACHED);
            } else if (!Files.exists(LAST_RUN_CACHED)) {
                Files.createDirectories(CACHE);
                Files.createFile(LAST_RUN_CACHED);
            }
        } catch (IOException | RuntimeException e) {
            // only a hint for the next spare's warm-up
        }
    }

    /** Goes through a cache look-up once (digest, file reading), so that a run's look-up finds it all loaded. */
    static void warm() {
        String key = key(Paths.get("/nonexistent/Warm.java"), "", UserClassPath.fromEnvironment());
        if (key != null) {
            load(key);
        }
    }

    private static String key(Path file, String source, UserClassPath classPath) {
        try {
            MessageDigest digest = MessageDigest.getInstance("SHA-256");
            String parts = String.join("\0", "format " + FORMAT, System.getProperty("java.home"),
                    System.getProperty("java.vm.version"), Charset.defaultCharset().name(),
                    String.valueOf(file.getFileName()), classPath.fingerprint(), source);
            byte[] hash = digest.digest(parts.getBytes(StandardCharsets.UTF_8));
            StringBuilder hex = new StringBuilder();
            for (byte b : hash) {
                hex.append(Character.forDigit((b >> 4) & 15, 16)).append(Character.forDigit(b & 15, 16));
            }
            return hex.toString();
        } catch (NoSuchAlgorithmException e) {
            return null;
        }
    }

    private static Program load(String key) {
        try {
            byte[] bytes = Files.readAllBytes(CACHE.resolve(key));
            DataInputStream in = new DataInputStream(new ByteArrayInputStream(bytes));
            String main = in.readUTF();
            int count = in.readInt();
            Map<String, byte[]> classes = new LinkedHashMap<>();
            for (int i = 0; i < count; i++) {
                String name = in.readUTF();
                byte[] data = new byte[in.readInt()];
                in.readFully(data);
                classes.put(name, data);
            }
            return classes.containsKey(main) ? new Program(main, classes) : null;
        } catch (IOException | RuntimeException e) {
            return null; // absent or unreadable: compile
        }
    }

    private static void store(String key, Program program) {
        Path temporary = null;
        try {
            Files.createDirectories(CACHE);
            ByteArrayOutputStream bytes = new ByteArrayOutputStream();
            DataOutputStream out = new DataOutputStream(bytes);
            out.writeUTF(program.mainClass());
            out.writeInt(program.classes().size());
            for (Map.Entry<String, byte[]> entry : program.classes().entrySet()) {
                out.writeUTF(entry.getKey());
                out.writeInt(entry.getValue().length);
                out.write(entry.getValue());
            }
            out.flush();
            temporary = Files.createTempFile(CACHE, "." + key, ".part");
            Files.write(temporary, bytes.toByteArray());
            Files.move(temporary, CACHE.resolve(key), StandardCopyOption.REPLACE_EXISTING,
                    StandardCopyOption.ATOMIC_MOVE);
            temporary = null;
            prune();
        } catch (IOException | RuntimeException e) {
            // a cache that cannot be written only costs the next run a compile
        } finally {
            if (temporary != null) {
                temporary.toFile().delete();
            }
        }
    }

    private static void prune() {
        File[] entries = CACHE.toFile().listFiles(file -> !file.getName().startsWith("."));
        if (entries == null || entries.length <= KEEP) {
            return;
        }
        Arrays.sort(entries, Comparator.comparingLong(File::lastModified).reversed());
        for (int i = KEEP; i < entries.length; i++) {
            entries[i].delete();
        }
    }

    /** Passes javac's report on to stderr and notes whether there was any. */
    private static final class ObservedWriter extends Writer {
        private final Writer target;
        boolean written;

        ObservedWriter(Writer target) {
            this.target = target;
        }

        @Override
        public void write(char[] buffer, int offset, int length) throws IOException {
            written |= length > 0;
            target.write(buffer, offset, length);
        }

        @Override
        public void flush() {
            try {
                target.flush();
            } catch (IOException e) {
                // stderr gone: nothing left to tell
            }
        }

        @Override
        public void close() {
            flush();
        }
    }
}
