package io.lagoon.benchmarks;

import io.lagoon.benchmarks.support.Capture;
import io.lagoon.benchmarks.support.Pools;
import io.lagoon.benchmarks.support.StubConnection;
import io.lagoon.benchmarks.support.StubConnectionFactory;
import io.r2dbc.spi.Connection;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Threads;
import org.openjdk.jmh.annotations.Warmup;
import reactor.core.publisher.Mono;

/**
 * The cost of one acquire + release of a pooled connection, with a zero-latency stub driver so
 * that the figure is the pool's own: Lagoon, r2dbc-pool 1.0.2 (the incumbent) and a baseline
 * that is the least any {@code ConnectionFactory} can cost ({@code Mono.just(connection)} to
 * acquire, {@code Mono.empty()} to close).
 *
 * <p>Each operation subscribes a reusable {@link Capture} to {@code create()}, takes the
 * connection, then subscribes another one to {@code close()}: no {@code block()}, no per-operation
 * subscriber allocation, so {@code -prof gc}'s {@code gc.alloc.rate.norm} is what the pool
 * allocates per acquire + release (plus the few bytes the baseline shows).
 *
 * <ul>
 *   <li>{@code uncontended*}: one thread, pool of 10, every connection idle. The stub completes
 *       synchronously and so must both pools: {@link Capture#now()} fails the run otherwise.
 *   <li>{@code contended*}: two threads share one pool of 10; no one ever waits for a
 *       connection, but the threads race on the pool's shared state.
 *   <li>{@code saturated*}: four threads share a pool of 2, so acquires queue and a release hands
 *       its connection to a waiter on another thread, which must be woken (spin, then park). On a
 *       2-core machine only two of the four threads run at a time, so each thread's ns/op also
 *       includes the time it spends descheduled (about twice the per-core cost).
 * </ul>
 *
 * <p>The multi-threaded variants print, per thread and iteration, how many acquires were
 * completed by another thread ({@code completed by another thread: acquire N, release M of T}):
 * those are the hand-offs whose wake-ups dominate the waiting figures.
 *
 * <p>Lagoon runs without meters ({@code meters=none}); with {@code LagoonMetrics} bound to a
 * Prometheus registry ({@code meters=prometheus}: gauges, and the lean acquire-wait and usage
 * timers, one compare-and-set per release and nothing per acquire served at once); and with that
 * registry asking the {@code r2dbc.pool.*} timers for percentile histograms ({@code
 * meters=prometheus-histograms}: the registry's own timers, so each acquire + release updates two
 * Micrometer timers with histograms). {@code -p meters=listener} attaches an empty {@code
 * PoolListener} instead: what delivering the events costs.
 *
 * <p>r2dbc-pool runs with {@code maxAcquireTime} "none" (its default: no acquire timeout) and
 * "PT30S" (Lagoon's default bound, which r2dbc-pool enforces with a {@code timeout()} operator on
 * every acquire). Lagoon always has its 30 s bound, armed only for acquires that wait.
 *
 * <p>Run (2 cores; about 1.5 minutes):
 *
 * <pre>
 * mvn -B -q install -DskipTests     (from the repository root)
 * mvn -B -q -f jmh/pom.xml package &amp;&amp; java -jar jmh/target/benchmarks.jar AcquireReleaseBenchmark -wi 3 -i 5 -w 1s -r 1s -f 1 -prof gc
 * </pre>
 *
 * <p>On a machine that other work shares, add {@code -prof
 * io.lagoon.benchmarks.support.CpuTimeProfiler}: its {@code cpu.time.norm} is the CPU time the
 * benchmark threads spent per operation, which waiting for a core does not inflate. The meters'
 * cost, for example:
 *
 * <pre>
 * java -jar jmh/target/benchmarks.jar AcquireReleaseBenchmark.uncontendedLagoon -p meters=none,listener,prometheus,prometheus-histograms -wi 4 -i 8 -w 1s -r 500ms -f 1 -prof gc -prof io.lagoon.benchmarks.support.CpuTimeProfiler
 * </pre>
 *
 * Mode AverageTime, ns/op; with several threads, the average time one thread takes per
 * operation.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"-Xms1g", "-Xmx1g"})
public class AcquireReleaseBenchmark {

  // ------------------------------------------------------------------ states

  /** Per benchmark thread: the two reusable subscribers. */
  @State(Scope.Thread)
  public static class Subscribers {
    final Capture<Connection> acquired = new Capture<>();
    final Capture<Void> released = new Capture<>();
    long awaited;
    long deliveredElsewhere;
    long releasedElsewhere;

    /** Acquire and release, both of which must complete on this thread before returning. */
    Connection acquireReleaseSync(Mono<? extends Connection> create) {
      create.subscribe(acquired.arm());
      Connection c = acquired.now();
      c.close().subscribe(released.arm());
      released.now();
      return c;
    }

    /** Acquire and release; either may complete on another thread (a waiter is woken). */
    Connection acquireReleaseAwait(Mono<? extends Connection> create) {
      create.subscribe(acquired.arm());
      Connection c = acquired.await();
      awaited++;
      if (acquired.completedElsewhere()) {
        deliveredElsewhere++;
      }
      c.close().subscribe(released.arm());
      released.await();
      if (released.completedElsewhere()) {
        releasedElsewhere++;
      }
      return c;
    }

    /**
     * Prints, per thread, how many acquires were delivered by another thread (the caller had to be
     * woken): the share of cross-thread hand-offs explains most of the contended figures.
     */
    @TearDown(Level.Iteration)
    public void report() {
      if (awaited > 0) {
        String t = Thread.currentThread().getName();
        System.out.printf("[%s] completed by another thread: acquire %d, release %d of %d"
            + " (%.1f%%, %.1f%%)%n", t.substring(t.lastIndexOf('-') + 1), deliveredElsewhere,
            releasedElsewhere, awaited, 100.0 * deliveredElsewhere / awaited,
            100.0 * releasedElsewhere / awaited);
      }
      awaited = 0;
      deliveredElsewhere = 0;
      releasedElsewhere = 0;
    }
  }

  /** The baseline: a cached {@code Mono.just} of one stub connection, whose close is empty. */
  @State(Scope.Benchmark)
  public static class Baseline {
    final Mono<Connection> create = Mono.just(new StubConnection());
  }

  @State(Scope.Benchmark)
  public static class Lagoon10 {
    /** See {@link Pools#lagoon(io.r2dbc.spi.ConnectionFactory, int, String)}. */
    @Param({"none", "prometheus", "prometheus-histograms"})
    public String meters;

    io.lagoon.ConnectionPool pool;
    Mono<? extends Connection> create;

    @Setup(Level.Trial)
    public void setUp() {
      pool = Pools.lagoon(new StubConnectionFactory(), 10, meters);
      create = pool.create();
    }

    @TearDown(Level.Trial)
    public void tearDown() {
      pool.dispose();
    }
  }

  @State(Scope.Benchmark)
  public static class Lagoon2 {
    /** See {@link Pools#lagoon(io.r2dbc.spi.ConnectionFactory, int, String)}. */
    @Param({"none", "prometheus", "prometheus-histograms"})
    public String meters;

    io.lagoon.ConnectionPool pool;
    Mono<? extends Connection> create;

    @Setup(Level.Trial)
    public void setUp() {
      pool = Pools.lagoon(new StubConnectionFactory(), 2, meters);
      create = pool.create();
    }

    @TearDown(Level.Trial)
    public void tearDown() {
      pool.dispose();
    }
  }

  @State(Scope.Benchmark)
  public static class R2dbcPool10 {
    @Param({"none", "PT30S"})
    public String maxAcquireTime;

    io.r2dbc.pool.ConnectionPool pool;
    Mono<? extends Connection> create;

    @Setup(Level.Trial)
    public void setUp() {
      pool = Pools.r2dbcPool(new StubConnectionFactory(), 10, Pools.parseTimeout(maxAcquireTime));
      create = pool.create();
    }

    @TearDown(Level.Trial)
    public void tearDown() {
      pool.dispose();
    }
  }

  @State(Scope.Benchmark)
  public static class R2dbcPool2 {
    @Param({"none", "PT30S"})
    public String maxAcquireTime;

    io.r2dbc.pool.ConnectionPool pool;
    Mono<? extends Connection> create;

    @Setup(Level.Trial)
    public void setUp() {
      pool = Pools.r2dbcPool(new StubConnectionFactory(), 2, Pools.parseTimeout(maxAcquireTime));
      create = pool.create();
    }

    @TearDown(Level.Trial)
    public void tearDown() {
      pool.dispose();
    }
  }

  // ------------------------------------------------------------------ one thread, pool of 10

  @Benchmark
  @Threads(1)
  public Connection uncontendedBaseline(Baseline b, Subscribers s) {
    return s.acquireReleaseSync(b.create);
  }

  @Benchmark
  @Threads(1)
  public Connection uncontendedLagoon(Lagoon10 p, Subscribers s) {
    return s.acquireReleaseSync(p.create);
  }

  @Benchmark
  @Threads(1)
  public Connection uncontendedR2dbcPool(R2dbcPool10 p, Subscribers s) {
    return s.acquireReleaseSync(p.create);
  }

  // ------------------------------------------------------------------ two threads, pool of 10

  @Benchmark
  @Threads(2)
  public Connection contendedLagoon(Lagoon10 p, Subscribers s) {
    return s.acquireReleaseAwait(p.create);
  }

  @Benchmark
  @Threads(2)
  public Connection contendedR2dbcPool(R2dbcPool10 p, Subscribers s) {
    return s.acquireReleaseAwait(p.create);
  }

  // ------------------------------------------------------------------ four threads, pool of 2

  @Benchmark
  @Threads(4)
  public Connection saturatedLagoon(Lagoon2 p, Subscribers s) {
    return s.acquireReleaseAwait(p.create);
  }

  @Benchmark
  @Threads(4)
  public Connection saturatedR2dbcPool(R2dbcPool2 p, Subscribers s) {
    return s.acquireReleaseAwait(p.create);
  }
}
