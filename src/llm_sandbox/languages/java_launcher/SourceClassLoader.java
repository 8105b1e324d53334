package llmsandbox.launcher;

import java.io.ByteArrayInputStream;
import java.io.InputStream;
import java.net.MalformedURLException;
import java.net.URL;
import java.net.URLConnection;
import java.net.URLStreamHandler;
import java.nio.file.Path;
import java.security.CodeSource;
import java.security.ProtectionDomain;
import java.security.cert.Certificate;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Enumeration;
import java.util.List;
import java.util.Map;

/**
 * The loader of the source file's classes, as the JDK launcher's: unnamed (stack traces show no loader name), those
 * classes first and everything else from the parent, their code source the source file, and their bytes readable as
 * resources.
 */
final class SourceClassLoader extends ClassLoader {
    private final Map<String, byte[]> classes;
    private final ProtectionDomain domain;
    private final String protocol = "sourcelauncher-" + getClass().getSimpleName() + hashCode();
    private URLStreamHandler handler;

    SourceClassLoader(Map<String, byte[]> classes, ClassLoader parent, Path file) {
        super(parent);
        this.classes = classes;
        URL location;
        try {
            location = file.toUri().toURL();
        } catch (MalformedURLException e) {
            location = null;
        }
        this.domain = new ProtectionDomain(new CodeSource(location, (Certificate[]) null), null, this, null);
    }

    @Override
    protected Class<?> loadClass(String name, boolean resolve) throws ClassNotFoundException {
        synchronized (getClassLoadingLock(name)) {
            Class<?> found = findLoadedClass(name);
            if (found == null) {
                found = classes.containsKey(name) ? findClass(name) : getParent().loadClass(name);
            }
            if (resolve) {
                resolveClass(found);
            }
            return found;
        }
    }

    @Override
    protected Class<?> findClass(String name) throws ClassNotFoundException {
        byte[] bytes = classes.get(name);
        if (bytes == null) {
            throw new ClassNotFoundException(name);
        }
        return defineClass(name, bytes, 0, bytes.length, domain);
    }

    @Override
    public URL getResource(String name) {
        return classes.containsKey(binaryName(name)) ? findResource(name) : getParent().getResource(name);
    }

    @Override
    public Enumeration<URL> getResources(String name) throws java.io.IOException {
        URL own = findResource(name);
        Enumeration<URL> inherited = getParent().getResources(name);
        if (own == null) {
            return inherited;
        }
        List<URL> all = new ArrayList<>();
        all.add(own);
        all.addAll(Collections.list(inherited));
        return Collections.enumeration(all);
    }

    @Override
    protected URL findResource(String name) {
        String binary = binaryName(name);
        if (binary == null || !classes.containsKey(binary)) {
            return null;
        }
        if (handler == null) {
            handler = new URLStreamHandler() {
                @Override
                protected URLConnection openConnection(URL url) {
                    return new URLConnection(url) {
                        @Override
                        public void connect() {}

                        @Override
                        public InputStream getInputStream() {
                            return new ByteArrayInputStream(classes.get(binaryName(url.getPath().substring(1))));
                        }
                    };
                }
            };
        }
        try {
            return new URL(protocol, null, -1, "/" + name, handler);
        } catch (MalformedURLException e) {
            return null;
        }
    }

    @Override
    protected Enumeration<URL> findResources(String name) {
        URL own = findResource(name);
        return own == null ? Collections.emptyEnumeration() : Collections.enumeration(List.of(own));
    }

    private static String binaryName(String resource) {
        if (!resource.endsWith(".class")) {
            return null;
        }
        return resource.substring(0, resource.length() - ".class".length()).replace('/', '.');
    }
}
