package llmsandbox.launcher;

import com.sun.source.util.JavacTask;
import com.sun.source.util.TaskEvent;
import com.sun.source.util.TaskListener;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.io.Writer;
import java.net.URI;
import java.nio.charset.Charset;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.BooleanSupplier;
import javax.lang.model.SourceVersion;
import javax.lang.model.element.NestingKind;
import javax.lang.model.element.TypeElement;
import javax.tools.FileObject;
import javax.tools.ForwardingJavaFileManager;
import javax.tools.JavaCompiler;
import javax.tools.JavaFileManager;
import javax.tools.JavaFileObject;
import javax.tools.SimpleJavaFileObject;
import javax.tools.StandardJavaFileManager;
import javax.tools.StandardLocation;
import javax.tools.ToolProvider;
import llmsandbox.launcher.SourceLaunch.LaunchFault;
import llmsandbox.launcher.SourceLaunch.Program;

/**
 * The in-memory compile of JDK 17's source-file mode: the same javac options ({@code -proc:none -Xdiags:verbose}), no
 * source path, the class path from {@code java.class.path}, the source read in the default charset, and the first
 * top-level class analysed as the one to run. javac's own report goes to the writer given, as the launcher's goes to
 * stderr.
 */
final class SourceCompiler {
    static final List<String> OPTIONS = List.of("-proc:none", "-Xdiags:verbose");

    private SourceCompiler() {}

    /**
     * Compiles {@code source} (shown in messages as {@code file}); {@code stop}, polled between compiler phases,
     * abandons the compile by an {@link Abandoned}.
     */
    static Program compile(Path file, String source, Writer report, BooleanSupplier stop, boolean defaultClassPath)
            throws LaunchFault {
        JavaCompiler javac = ToolProvider.getSystemJavaCompiler();
        StandardJavaFileManager standard = javac.getStandardFileManager(null, null, null);
        Map<String, byte[]> classes = new LinkedHashMap<>();
        try {
            standard.setLocation(StandardLocation.SOURCE_PATH, List.of());
            if (!defaultClassPath) {
                standard.setLocation(StandardLocation.CLASS_PATH, List.of());
            }
        } catch (IOException e) {
            throw new Error("unexpected exception from file manager", e);
        }
        JavaFileManager files = new InMemoryOutput(standard, classes);
        List<Source> sources = List.of(new Source(file, source));
        JavacTask task = (JavacTask) javac.getTask(report, files, null, OPTIONS, null, sources);
        TypeElement[] first = new TypeElement[1];
        task.addTaskListener(new TaskListener() {
            @Override
            public void started(TaskEvent event) {
                if (stop.getAsBoolean()) {
                    throw new Abandoned();
                }
                if (event.getKind() == TaskEvent.Kind.ANALYZE && first[0] == null
                        && event.getTypeElement().getNestingKind() == NestingKind.TOP_LEVEL) {
                    first[0] = event.getTypeElement();
                }
            }
        });
        boolean compiled = task.call();
        if (!compiled) {
            throw new LaunchFault("compilation failed");
        }
        if (first[0] == null) {
            throw new LaunchFault("no class declared in source file");
        }
        return new Program(first[0].getQualifiedName().toString(), classes);
    }

    /** Reads the source file as the launcher does: in the default charset. */
    static String read(Path file) throws LaunchFault {
        try {
            return new String(java.nio.file.Files.readAllBytes(file), Charset.defaultCharset());
        } catch (IOException e) {
            throw new LaunchFault("error reading source file " + file + ": " + e);
        }
    }

    /** Thrown out of javac by the warm-up when a run arrives: the compile is of no more use. */
    static final class Abandoned extends RuntimeException {
        private static final long serialVersionUID = 1L;

        Abandoned() {
            super(null, null, false, false);
        }
    }

    /** The source file: named by its path as given, and compatible with any class name, as in the launcher. */
    private static final class Source extends SimpleJavaFileObject {
        private final Path file;
        private final String text;

        Source(Path file, String text) {
            super(file.toUri(), Kind.SOURCE);
            this.file = file;
            this.text = text;
        }

        @Override
        public String getName() {
            return file.toString();
        }

        @Override
        public CharSequence getCharContent(boolean ignoreEncodingErrors) {
            return text;
        }

        @Override
        public boolean isNameCompatible(String simpleName, Kind kind) {
            return kind == Kind.SOURCE && SourceVersion.isIdentifier(simpleName);
        }
    }

    /** Keeps every class javac writes in memory, by binary name. */
    private static final class InMemoryOutput extends ForwardingJavaFileManager<JavaFileManager> {
        private final Map<String, byte[]> classes;

        InMemoryOutput(JavaFileManager delegate, Map<String, byte[]> classes) {
            super(delegate);
            this.classes = classes;
        }

        @Override
        public JavaFileObject getJavaFileForOutput(
                Location location, String className, JavaFileObject.Kind kind, FileObject sibling) {
            URI uri = URI.create("memory:///" + className.replace('.', '/') + kind.extension);
            return new SimpleJavaFileObject(uri, kind) {
                @Override
                public OutputStream openOutputStream() {
                    return new ByteArrayOutputStream() {
                        @Override
                        public void close() {
                            classes.put(className, toByteArray());
                        }
                    };
                }
            };
        }
    }
}
