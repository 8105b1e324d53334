package llmsandbox.launcher;

import java.io.File;
import java.net.MalformedURLException;
import java.net.URL;
import java.net.URLClassLoader;
import java.util.ArrayList;
import java.util.List;

/**
 * The program's class path, from CLASSPATH as the {@code java} launcher reads it when the run starts (the spare's own
 * class path holds only the launcher): unset means ".", and an entry that is {@code *} or ends in {@code /*} stands
 * for the .jar and .JAR files of that folder in directory order, or stays as written when there are none.
 *
 * <p>Its classes come from a loader of their own, the parent of the program's loader and the main thread's context
 * loader; {@code ClassLoader.getSystemClassLoader()} does not see them, unlike under {@code java File.java}. (A
 * system class loader of the launcher's, {@code -Djava.system.class.loader}, would, but it switches off the class
 * data sharing archive for javac's classes, and the JVM warns about it on stderr.)
 */
final class UserClassPath {
    private final String text;
    private final List<String> entries;
    private URLClassLoader loader;

    private UserClassPath(String text, List<String> entries) {
        this.text = text;
        this.entries = entries;
    }

    static UserClassPath fromEnvironment() {
        String variable = System.getenv("CLASSPATH");
        if (variable == null) {
            return new UserClassPath(".", List.of("."));
        }
        List<String> entries = new ArrayList<>();
        for (String entry : variable.split(File.pathSeparator, -1)) {
            entries.addAll(expand(entry));
        }
        return new UserClassPath(String.join(File.pathSeparator, entries), entries);
    }

    private static List<String> expand(String entry) {
        String folder;
        if (entry.equals("*")) {
            folder = ".";
        } else if (entry.endsWith(File.separator + "*")) {
            folder = entry.substring(0, entry.length() - 2);
        } else {
            return List.of(entry);
        }
        String[] names = new File(folder.isEmpty() ? File.separator : folder).list();
        List<String> jars = new ArrayList<>();
        if (names != null) {
            for (String name : names) {
                if (name.endsWith(".jar") || name.endsWith(".JAR")) {
                    jars.add(entry.equals("*") ? name : folder + File.separator + name);
                }
            }
        }
        return jars.isEmpty() ? List.of(entry) : jars;
    }

    /** The class path as {@code java.class.path} shows it. */
    String text() {
        return text;
    }

    /** Each entry with what identifies its content (size and time of change), for the compile cache's key. */
    String fingerprint() {
        StringBuilder out = new StringBuilder();
        for (String entry : entries) {
            File file = new File(entry);
            out.append(entry).append('\0');
            out.append(file.isFile() ? file.length() + ":" + file.lastModified() : file.exists() ? "dir" : "-");
            out.append('\n');
        }
        return out.toString();
    }

    /** Whether a folder is on the class path: its classes can change with no trace in the fingerprint. */
    boolean hasFolders() {
        for (String entry : entries) {
            if (new File(entry.isEmpty() ? "." : entry).isDirectory()) {
                return true;
            }
        }
        return false;
    }

    /** Makes the class path the program's: {@code java.class.path} and the context class loader show it. */
    void install() {
        System.setProperty("java.class.path", text);
        Thread.currentThread().setContextClassLoader(loader());
    }

    /** The loader of the class path's classes, the parent of the program's own. */
    ClassLoader loader() {
        if (loader == null) {
            List<URL> urls = new ArrayList<>();
            for (String entry : entries) {
                try {
                    urls.add(new File(entry.isEmpty() ? "." : entry).toURI().toURL());
                } catch (MalformedURLException e) {
                    // not a place classes can come from: the java launcher skips it too
                }
            }
            loader = new URLClassLoader(urls.toArray(new URL[0]), ClassLoader.getSystemClassLoader());
        }
        return loader;
    }
}
