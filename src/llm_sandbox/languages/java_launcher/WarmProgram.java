package llmsandbox.launcher;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;

/**
 * A program like the ones runs bring, run by the warm-up in a loader of its own as a run's program is: string
 * concatenation, lambdas, records and streams bootstrap on their first use, which is then not the program's.
 */
public final class WarmProgram {
    private WarmProgram() {}

    record Pair(String name, int value) {}

    public static void main(String[] args) {
        List<Pair> pairs = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            pairs.add(new Pair("p" + i, i * 2));
        }
        Map<String, Integer> map = pairs.stream()
                .filter(p -> p.value() >= 0)
                .collect(Collectors.toMap(Pair::name, Pair::value));
        StringBuilder out = new StringBuilder(String.format("%d %s", map.size(), Arrays.toString(args)));
        Runnable task = () -> out.append(Math.max(1, 2));
        task.run();
        if (out.length() < 0) {
            System.out.println(out + " " + map + " " + pairs.get(0));
        }
    }
}
