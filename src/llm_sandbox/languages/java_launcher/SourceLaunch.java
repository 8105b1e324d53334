package llmsandbox.launcher;

import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.nio.file.Files;
import java.nio.file.InvalidPathException;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Arrays;

/**
 * One run of a source file, as JDK 17's {@code java File.java} does it: the first top-level class of the file is
 * compiled in memory and its {@code main(String[])} run with no arguments, in a fresh class loader whose parent sees
 * the class path. Every message, exit status and stack trace is the JDK launcher's.
 */
final class SourceLaunch {
    private SourceLaunch() {}

    static void run(String argument) throws Throwable {
        try {
            Path file = sourceFile(argument);
            UserClassPath classPath = UserClassPath.fromEnvironment();
            classPath.install(); // javac's class path is java.class.path, as in the JDK launcher
            Program program = Programs.compiled(file, classPath);
            execute(program, file.toAbsolutePath(), classPath);
        } catch (LaunchFault fault) {
            System.err.println(fault.getMessage());
            System.exit(1);
        } catch (InvocationTargetException e) {
            throw e.getCause(); // the JVM prints it as it prints any uncaught exception of main
        }
    }

    private static Path sourceFile(String argument) throws LaunchFault {
        Path file;
        try {
            file = Paths.get(argument);
        } catch (InvalidPathException e) {
            throw new LaunchFault("invalid path for source file: " + argument);
        }
        if (!Files.exists(file)) {
            throw new LaunchFault("source file not found: " + file);
        }
        return file;
    }

    private static void execute(Program program, Path file, UserClassPath classPath)
            throws LaunchFault, InvocationTargetException {
        System.setProperty("jdk.launcher.sourcefile", file.toString());
        System.setProperty("sun.java.command", "jdk.compiler/com.sun.tools.javac.launcher.Main " + file);
        ClassLoader loader = new SourceClassLoader(program.classes(), classPath.loader(), file);
        String name = program.mainClass();
        Class<?> mainClass;
        try {
            mainClass = Class.forName(name, true, loader);
        } catch (ClassNotFoundException e) {
            throw new LaunchFault("can't find class: " + name);
        } catch (Throwable e) {
            LauncherFrames.disguise(e, LauncherFrames.Site.INITIALIZE);
            throw e;
        }
        Method main;
        try {
            main = mainClass.getDeclaredMethod("main", String[].class);
        } catch (NoSuchMethodException e) {
            throw new LaunchFault("can't find main(String[]) method in class: " + name);
        }
        int publicStatic = Modifier.PUBLIC | Modifier.STATIC;
        if ((main.getModifiers() & publicStatic) != publicStatic) {
            throw new LaunchFault("'main' method is not declared 'public static'");
        }
        if (!main.getReturnType().equals(void.class)) {
            throw new LaunchFault("'main' method is not declared with a return type of 'void'");
        }
        main.setAccessible(true);
        try {
            main.invoke(null, (Object) new String[0]);
        } catch (IllegalAccessException e) {
            throw new LaunchFault("can't access main method in class: " + name);
        } catch (InvocationTargetException e) {
            // As the JDK launcher does: the program's exception loses the frames of the call into it, and any other
            // exception that still shows them (a cause, a suppressed one) shows the JDK launcher's frames instead.
            Throwable target = e.getCause();
            int callFrames = e.getStackTrace().length;
            StackTraceElement[] trace = target.getStackTrace();
            target.setStackTrace(Arrays.copyOfRange(trace, 0, Math.max(0, trace.length - callFrames)));
            LauncherFrames.disguise(target, LauncherFrames.Site.INVOKE);
            throw e;
        }
    }

    /** The JDK launcher's "error: ..." report; it prints it and exits with status 1. */
    static final class LaunchFault extends Exception {
        private static final long serialVersionUID = 1L;

        LaunchFault(String message) {
            super("error: " + message, null, false, false);
        }
    }

    /** What compiling a source file gives: the class to run and every class's bytes, by binary name. */
    record Program(String mainClass, java.util.Map<String, byte[]> classes) {}
}
