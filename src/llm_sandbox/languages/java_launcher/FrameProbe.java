/**
 * Run by the image build as {@code java FrameProbe.java}: prints the JDK launcher's own frames below the program, from
 * main and from the class's initialisation, in the record {@code LauncherFrames} reads.
 */
public class FrameProbe {
    static {
        print("INITIALIZE");
    }

    public static void main(String[] args) {
        print("INVOKE");
    }

    private static void print(String site) {
        for (StackTraceElement frame : new Throwable().getStackTrace()) {
            if ("jdk.compiler".equals(frame.getModuleName())) {
                System.out.println(site + " " + frame.getClassName() + " " + frame.getMethodName() + " "
                        + frame.getFileName() + " " + frame.getLineNumber());
            }
        }
    }
}
