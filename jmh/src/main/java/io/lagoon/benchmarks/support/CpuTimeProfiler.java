package io.lagoon.benchmarks.support;

import java.lang.management.ManagementFactory;
import java.lang.management.ThreadInfo;
import java.lang.management.ThreadMXBean;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.openjdk.jmh.infra.BenchmarkParams;
import org.openjdk.jmh.infra.IterationParams;
import org.openjdk.jmh.profile.InternalProfiler;
import org.openjdk.jmh.results.AggregationPolicy;
import org.openjdk.jmh.results.IterationResult;
import org.openjdk.jmh.results.Result;
import org.openjdk.jmh.results.ScalarResult;

/**
 * CPU time of the benchmark threads per operation ({@code cpu.time.norm}, ns/op), for a machine
 * that other work shares. The AverageTime score is wall time: it grows while a benchmark thread
 * waits for a core, so on a loaded 2-core machine two runs of the same code can differ by 2x. CPU
 * time counts only the time the threads ran, which is what a change to the code changes.
 *
 * <p>It sums the CPU time of the JMH worker threads over each iteration (the figure includes a
 * little of JMH's own loop and iteration bookkeeping) and divides it by the operations the
 * iteration completed, derived from the score ({@code ops = threads * wall / score}, so it
 * applies to Mode AverageTime with ns/op only). Use it beside the score, not instead:
 *
 * <pre>
 * java -jar jmh/target/benchmarks.jar AcquireReleaseBenchmark.uncontendedLagoon \
 *     -prof gc -prof io.lagoon.benchmarks.support.CpuTimeProfiler
 * </pre>
 */
public final class CpuTimeProfiler implements InternalProfiler {

  private final ThreadMXBean threads = ManagementFactory.getThreadMXBean();
  private Map<Long, Long> cpuBefore = Map.of();
  private long wallBefore;

  @Override
  public String getDescription() {
    return "CPU time of the JMH worker threads per operation (AverageTime, ns/op only)";
  }

  @Override
  public void beforeIteration(BenchmarkParams benchmark, IterationParams iteration) {
    cpuBefore = workerCpu();
    wallBefore = System.nanoTime();
  }

  @Override
  public Collection<? extends Result> afterIteration(BenchmarkParams benchmark,
      IterationParams iteration, IterationResult result) {
    long wall = System.nanoTime() - wallBefore;
    long cpu = 0;
    for (Map.Entry<Long, Long> e : workerCpu().entrySet()) {
      cpu += e.getValue() - cpuBefore.getOrDefault(e.getKey(), 0L);
    }
    double score = result.getPrimaryResult().getScore();
    double ops = benchmark.getThreads() * (double) wall / score;
    return List.of(new ScalarResult("cpu.time.norm", cpu / ops, "ns/op", AggregationPolicy.AVG));
  }

  private Map<Long, Long> workerCpu() {
    Map<Long, Long> cpu = new HashMap<>();
    for (ThreadInfo t : threads.getThreadInfo(threads.getAllThreadIds())) {
      if (t != null && t.getThreadName().contains("jmh-worker")) {
        long ns = threads.getThreadCpuTime(t.getThreadId());
        if (ns >= 0) {
          cpu.put(t.getThreadId(), ns);
        }
      }
    }
    return cpu;
  }
}
