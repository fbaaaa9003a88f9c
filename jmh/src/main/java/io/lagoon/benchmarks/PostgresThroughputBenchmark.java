package io.lagoon.benchmarks;

import io.lagoon.benchmarks.support.Pools;
import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactories;
import io.r2dbc.spi.ConnectionFactory;
import io.r2dbc.spi.ConnectionFactoryOptions;
import java.time.Duration;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OperationsPerInvocation;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Threads;
import org.openjdk.jmh.annotations.Warmup;
import org.reactivestreams.Publisher;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/**
 * Throughput of {@code acquire -> SELECT 1 -> close} against a real PostgreSQL, with 64 loops
 * running at once: through Lagoon (pool of 10), through r2dbc-pool 1.0.2 (pool of 10), and
 * opening a new physical connection for every request (no pool).
 *
 * <p>How it is measured. One benchmark invocation runs a fixed batch of operations: 64 loops start
 * together and each repeats {@code acquire -> SELECT 1 -> close} (the next acquire only after the
 * previous close completed) while tickets remain from a shared counter of {@code BATCH}; the
 * invocation ends when every loop has finished. JMH divides by {@code @OperationsPerInvocation},
 * so the score is completed operations per second of wall-clock time. Exactly 64 requests are in
 * flight for the whole batch except its last round, while the final loops drain: that tail is one
 * round in {@code BATCH / 64} (1/64 for the pools, 1/8 for connect-per-request, whose batch is
 * smaller because each operation is a full connect), so the figures are slightly pessimistic,
 * equally for both pools. The JMH thread only waits ({@code block()}); the work runs on the
 * driver's event loops. PostgreSQL shares the machine's cores with the JVM.
 *
 * <p>The server: the R2DBC URL in {@code LAGOON_TEST_POSTGRES_URL} (as for the project's tests),
 * else {@code r2dbc:postgresql://postgres@127.0.0.1:5432/test}. If it cannot be reached, each
 * benchmark here fails at setup with one line saying so, and the rest of the run goes on.
 *
 * <p>Warm-up is much longer than for the stub benchmarks: on 2 cores shared with PostgreSQL, the
 * pooled variants climb from about 4,000 to 40,000+ ops/s over their first 15-20 s (the JIT
 * compiles the driver's, Netty's and Reactor's paths while the cores are busy), so a 3 x 1 s
 * warm-up measures the compiler, not the pool. 10 x 3 s of warm-up gets past the climb. Run
 * (about 2.5 minutes):
 *
 * <pre>
 * mvn -B -q install -DskipTests     (from the repository root)
 * mvn -B -q -f jmh/pom.xml package &amp;&amp; java -jar jmh/target/benchmarks.jar PostgresThroughputBenchmark -wi 10 -w 3s -i 5 -r 3s -f 1
 * </pre>
 */
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.SECONDS)
@Warmup(iterations = 10, time = 3)
@Measurement(iterations = 5, time = 3)
@Fork(value = 1, jvmArgsAppend = {"-Xms1g", "-Xmx1g"})
@Threads(1)
public class PostgresThroughputBenchmark {

  static final int LOOPS = 64;
  static final int POOL_SIZE = 10;
  /** Operations per invocation through a pool: 64 rounds of 64 loops. */
  static final int POOLED_BATCH = 64 * LOOPS;
  /** Operations per invocation when every request connects: 8 rounds of 64 loops. */
  static final int CONNECT_BATCH = 8 * LOOPS;

  static final String DEFAULT_URL = "r2dbc:postgresql://postgres@127.0.0.1:5432/test";
  static final Duration BATCH_TIMEOUT = Duration.ofMinutes(2);

  /** Setup failure meaning "PostgreSQL is not there": one line, no stack trace. */
  static final class PostgresUnavailable extends RuntimeException {
    private static final long serialVersionUID = 1L;

    PostgresUnavailable(String message) {
      super(message, null, false, false);
    }
  }

  @State(Scope.Benchmark)
  public static class Database {
    ConnectionFactory driver;
    String url;

    @Setup(Level.Trial)
    public void setUp() {
      String env = System.getenv("LAGOON_TEST_POSTGRES_URL");
      url = env == null || env.isBlank() ? DEFAULT_URL : env;
      try {
        driver = ConnectionFactories.get(ConnectionFactoryOptions.parse(url).mutate()
            .option(ConnectionFactoryOptions.CONNECT_TIMEOUT, Duration.ofSeconds(3))
            .build());
        Integer one = selectOne(driver.create()).block(Duration.ofSeconds(10));
        if (one == null || one != 1) {
          throw new IllegalStateException("SELECT 1 returned " + one);
        }
      } catch (RuntimeException e) {
        String message = "PostgreSQL is not reachable at " + url.replaceAll(":[^:@/]*@", ":***@")
            + " (" + rootMessage(e) + "): PostgresThroughputBenchmark skipped. Start PostgreSQL"
            + " there or set LAGOON_TEST_POSTGRES_URL to an R2DBC URL.";
        throw new PostgresUnavailable(message);
      }
    }

    private static String rootMessage(Throwable e) {
      Throwable t = e;
      while (t.getCause() != null && t.getCause() != t) {
        t = t.getCause();
      }
      return t.getClass().getSimpleName() + ": " + t.getMessage();
    }
  }

  @State(Scope.Benchmark)
  public static class LagoonPool {
    io.lagoon.ConnectionPool pool;
    Mono<? extends Connection> create;

    @Setup(Level.Trial)
    public void setUp(Database db) {
      pool = Pools.lagoon(db.driver, POOL_SIZE);
      create = pool.create();
    }

    @TearDown(Level.Trial)
    public void tearDown() {
      pool.closeGracefully(Duration.ofSeconds(5)).block(Duration.ofSeconds(10));
    }
  }

  @State(Scope.Benchmark)
  public static class R2dbcPool {
    io.r2dbc.pool.ConnectionPool pool;
    Mono<? extends Connection> create;

    @Setup(Level.Trial)
    public void setUp(Database db) {
      pool = Pools.r2dbcPool(db.driver, POOL_SIZE, null);
      create = pool.create();
    }

    @TearDown(Level.Trial)
    public void tearDown() {
      pool.disposeLater().block(Duration.ofSeconds(10));
    }
  }

  @Benchmark
  @OperationsPerInvocation(POOLED_BATCH)
  public long lagoon(LagoonPool p) {
    return runLoops(p.create, POOLED_BATCH);
  }

  @Benchmark
  @OperationsPerInvocation(POOLED_BATCH)
  public long r2dbcPool(R2dbcPool p) {
    return runLoops(p.create, POOLED_BATCH);
  }

  @Benchmark
  @OperationsPerInvocation(CONNECT_BATCH)
  public long connectPerRequest(Database db) {
    return runLoops(Mono.defer(() -> Mono.from(db.driver.create())), CONNECT_BATCH);
  }

  /** 64 loops of acquire -> SELECT 1 -> close, until {@code batch} operations completed. */
  static long runLoops(Publisher<? extends Connection> acquire, int batch) {
    AtomicInteger tickets = new AtomicInteger(batch);
    Mono<Integer> op = Mono.defer(() -> tickets.getAndDecrement() > 0
        ? selectOne(acquire)
        : Mono.empty());
    Flux<Integer> loop = op.repeat(() -> tickets.get() > 0);
    Long done = Flux.range(0, LOOPS)
        .flatMap(i -> loop, LOOPS)
        .count()
        .block(BATCH_TIMEOUT);
    if (done == null || done != batch) {
      throw new IllegalStateException("completed " + done + " operations, expected " + batch);
    }
    return done;
  }

  /** Acquire, run {@code SELECT 1}, emit its value, and close the connection in any case. */
  static Mono<Integer> selectOne(Publisher<? extends Connection> acquire) {
    return Mono.usingWhen(acquire,
        c -> Flux.from(c.createStatement("SELECT 1").execute())
            .flatMap(result -> result.map((row, meta) -> row.get(0, Integer.class)))
            .single(),
        Connection::close);
  }
}
