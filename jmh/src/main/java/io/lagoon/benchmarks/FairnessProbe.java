package io.lagoon.benchmarks;

import io.lagoon.benchmarks.support.Pools;
import io.lagoon.benchmarks.support.StubConnection;
import io.lagoon.benchmarks.support.StubConnectionFactory;
import io.r2dbc.spi.Connection;
import java.lang.management.ManagementFactory;
import java.time.Duration;
import java.util.Arrays;
import java.util.Locale;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import reactor.core.publisher.Mono;
import reactor.core.scheduler.Scheduler;
import reactor.core.scheduler.Schedulers;

/**
 * How evenly a saturated pool shares its connections: 1,024 loops run at once on a pool of 10
 * over the zero-latency stub driver, each repeating {@code acquire -> hop to
 * Schedulers.parallel() -> close} (the connection is held across one asynchronous hop, so
 * acquires really queue), for a fixed time per pool. Then it prints, over the loops, the minimum,
 * median and maximum number of operations each completed, with the 1st and 99th percentiles, the
 * total throughput, the bytes allocated per operation (all threads, including the probe's own
 * operators: compare the two pools, not the absolute value) and Jain's fairness index ({@code (sum x)^2 / (n * sum x^2)}; 1.0 is perfectly
 * even, 1/n is one loop getting everything).
 *
 * <p>A loop's next acquire starts only after its previous close completed. A strictly FIFO pool
 * therefore serves the loops round-robin and every loop completes about {@code total / 1024}
 * operations. Each pool first runs an unmeasured warm-up round of a third of the time.
 *
 * <p>Not a JMH benchmark (it measures a distribution, not a time per operation). Run:
 *
 * <pre>
 * mvn -B -q install -DskipTests     (from the repository root)
 * mvn -B -q -f jmh/pom.xml package &amp;&amp; java -Xms1g -Xmx1g -cp jmh/target/benchmarks.jar io.lagoon.benchmarks.FairnessProbe
 * </pre>
 *
 * Optional arguments: {@code [seconds per pool, default 5] [loops, default 1024] [pool size,
 * default 10] [lagoon|r2dbc-pool|both, default both]}; "both" also prints a "no pool" line first
 * ({@code Mono.just(connection)}, {@code Mono.empty()} close): the probe's own ceiling and
 * allocation, to subtract.
 */
public final class FairnessProbe {

  private FairnessProbe() {}

  public static void main(String[] args) throws Exception {
    int seconds = args.length > 0 ? Integer.parseInt(args[0]) : 5;
    int loops = args.length > 1 ? Integer.parseInt(args[1]) : 1024;
    int poolSize = args.length > 2 ? Integer.parseInt(args[2]) : 10;
    String which = args.length > 3 ? args[3] : "both";
    Duration window = Duration.ofSeconds(seconds);
    Duration warmup = window.dividedBy(3);

    System.out.printf(Locale.ROOT, "FairnessProbe: %d loops, pool of %d, stub driver, %d s per pool"
        + " (after %d ms warm-up), %d cores%n%n", loops, poolSize, seconds, warmup.toMillis(),
        Runtime.getRuntime().availableProcessors());
    System.out.println("pool          ops/s    B/op     min      p1  median     p99     max    Jain");

    if (which.equals("both")) {
      // No pool: every loop gets the same connection at once. Not a fairness figure; it shows
      // the probe's own throughput ceiling and allocation (usingWhen, the hop, the loop).
      Mono<Connection> bare = Mono.just(new StubConnection());
      run(bare, loops, warmup);
      print("no pool", bare, loops, window);
    }
    if (!which.equals("r2dbc-pool")) {
      io.lagoon.ConnectionPool lagoon = Pools.lagoon(new StubConnectionFactory(), poolSize);
      try {
        run(lagoon.create(), loops, warmup);
        print("Lagoon", lagoon.create(), loops, window);
      } finally {
        lagoon.dispose();
      }
    }
    if (!which.equals("lagoon")) {
      io.r2dbc.pool.ConnectionPool r2dbc =
          Pools.r2dbcPool(new StubConnectionFactory(), poolSize, null);
      try {
        run(r2dbc.create(), loops, warmup);
        print("r2dbc-pool", r2dbc.create(), loops, window);
      } finally {
        r2dbc.dispose();
      }
    }
    System.exit(0);
  }

  /** Runs {@code loops} loops for {@code window}; returns each loop's completed operations. */
  static long[] run(Mono<? extends Connection> acquire, int loops, Duration window)
      throws InterruptedException {
    Scheduler hop = Schedulers.parallel();
    Mono<Void> op = Mono.usingWhen(acquire,
        c -> Mono.just(c).publishOn(hop).then(), // hold the connection across one hop
        Connection::close);
    Loop[] all = new Loop[loops];
    CountDownLatch stopped = new CountDownLatch(loops);
    AtomicReference<Throwable> failure = new AtomicReference<>();
    Window w = new Window();
    for (int i = 0; i < loops; i++) {
      all[i] = new Loop(op, w, stopped, failure);
    }
    for (Loop l : all) {
      l.next();
    }
    Thread.sleep(window.toMillis());
    w.stop = true;
    if (!stopped.await(30, TimeUnit.SECONDS)) {
      throw new IllegalStateException(stopped.getCount() + " loops still running 30 s after stop");
    }
    if (failure.get() != null) {
      throw new IllegalStateException("a loop failed", failure.get());
    }
    long[] counts = new long[loops];
    for (int i = 0; i < loops; i++) {
      counts[i] = all[i].completed;
    }
    return counts;
  }

  static final class Window {
    volatile boolean stop;
  }

  /** One client: acquire, hop, close, repeat until the window closes. */
  static final class Loop {
    private final Mono<Void> op;
    private final Window window;
    private final CountDownLatch stopped;
    private final AtomicReference<Throwable> failure;
    /** Written only by the loop's current operation; read after {@code stopped} is released. */
    long completed;

    Loop(Mono<Void> op, Window window, CountDownLatch stopped, AtomicReference<Throwable> failure) {
      this.op = op;
      this.window = window;
      this.stopped = stopped;
      this.failure = failure;
    }

    void next() {
      if (window.stop) {
        stopped.countDown();
        return;
      }
      op.subscribe(null, err -> {
        failure.compareAndSet(null, err);
        stopped.countDown();
      }, this::done);
    }

    private void done() {
      if (!window.stop) {
        completed++;
      }
      next();
    }
  }

  /** Runs the measured window and prints one line of figures. */
  static void print(String pool, Mono<? extends Connection> acquire, int loops, Duration window)
      throws InterruptedException {
    long allocatedBefore = allocatedBytes();
    long[] counts = run(acquire, loops, window);
    long allocated = allocatedBytes() - allocatedBefore;
    long[] sorted = counts.clone();
    Arrays.sort(sorted);
    int n = sorted.length;
    double sum = 0;
    double sumSq = 0;
    for (long c : sorted) {
      sum += c;
      sumSq += (double) c * c;
    }
    double jain = sumSq == 0 ? 0 : sum * sum / (n * sumSq);
    // Allocation over the whole measured run (including the loops' drain after the window and
    // the probe's own Reactor operators), per operation counted in the window.
    System.out.printf(Locale.ROOT, "%-10s %9.0f %7.0f %7d %7d %7d %7d %7d  %.4f%n", pool,
        sum / (window.toNanos() / 1e9), sum == 0 ? 0 : allocated / sum, sorted[0],
        sorted[(int) (0.01 * (n - 1))], sorted[n / 2], sorted[(int) Math.ceil(0.99 * (n - 1))],
        sorted[n - 1], jain);
  }

  /** Bytes allocated so far by all live threads (HotSpot's per-thread TLAB accounting). */
  static long allocatedBytes() {
    com.sun.management.ThreadMXBean threads =
        (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
    long total = 0;
    for (long b : threads.getThreadAllocatedBytes(threads.getAllThreadIds())) {
      if (b > 0) {
        total += b;
      }
    }
    return total;
  }
}
