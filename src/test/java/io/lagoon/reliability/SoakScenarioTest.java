package io.lagoon.reliability;

import static org.assertj.core.api.Assertions.assertThat;

import io.lagoon.ConnectionPool;
import io.lagoon.PoolStats;
import static io.lagoon.testing.Gc.usedHeapAfterGc;

import io.lagoon.testing.Await;
import io.lagoon.testing.Backends;
import io.lagoon.testing.LoadLoops;
import io.lagoon.testing.PostgresSupport;
import io.lagoon.testing.Sql;
import io.r2dbc.spi.Connection;
import io.r2dbc.spi.R2dbcException;
import io.r2dbc.spi.Result;
import java.time.Duration;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.LongAdder;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.reactivestreams.Publisher;
import org.reactivestreams.Subscription;
import reactor.core.CoreSubscriber;
import reactor.core.Disposable;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.core.scheduler.Schedulers;

/**
 * Scenario 6, soak: 64 loops through a pool of 10 on PostgreSQL for 60 s (10 min with {@code
 * -Dlagoon.long=true}, or {@code -Dlagoon.soak.seconds=N}) with a mixed workload: queries,
 * committed transactions, rolled-back transactions, SQL errors, transactions abandoned after an
 * error (the pool's reset rolls them back), queries cancelled mid-flight, and acquires cancelled
 * while queued; one soft eviction halfway, and a {@code maxLifeTime} of a third of the run, so
 * every connection is replaced more than once.
 *
 * <p>Afterwards nothing is lent or pending, the server has as many backends as the pool holds,
 * and exactly the committed rows are in the table. The heap in use after a full collection at
 * 10 s and at the end, and the p99 of the first and last 10 s, are reported side by side; only
 * gross bounds are asserted (a shared 2-core machine makes timing ratios flaky).
 */
class SoakScenarioTest {

  private static final int MAX_SIZE = 10;
  private static final int SECONDS = Integer.getInteger("lagoon.soak.seconds",
      Boolean.getBoolean("lagoon.long") ? 600 : 60);
  private static final long HEAP_GROWTH_BOUND = 64L << 20;

  private final String app = Backends.marker("s6");
  private final String table = "lagoon_soak_" + app.substring(app.length() - 8);
  private ConnectionPool pool;
  private LoadLoops loops;
  private Disposable cancellers;
  private Backends backends;
  private Backends.Watch watch;

  private final LongAdder committed = new LongAdder();
  private final LongAdder rolledBack = new LongAdder();
  private final LongAdder sqlErrors = new LongAdder();
  private final LongAdder abandonedTransactions = new LongAdder();
  private final LongAdder cancelledQueries = new LongAdder();
  private final LongAdder cancelledAcquires = new LongAdder();
  private final LongAdder servedBeforeCancel = new LongAdder();
  private final AtomicInteger cancellerOutstanding = new AtomicInteger();

  @AfterEach
  void cleanUp() {
    if (cancellers != null) {
      cancellers.dispose();
    }
    if (loops != null) {
      loops.stopping().subscribe();
    }
    if (pool != null) {
      pool.dispose();
    }
    if (watch != null) {
      watch.close();
    }
    if (backends != null) {
      try {
        execute("DROP TABLE IF EXISTS " + table);
      } finally {
        backends.close();
      }
    }
  }

  @Test
  void aMixedWorkloadLeaksNothingAndKeepsItsHeapAndLatency() {
    backends = Backends.connect();
    execute("CREATE TABLE " + table + " (id serial PRIMARY KEY, v int NOT NULL)");
    pool = ConnectionPool.builder(PostgresSupport.connectionFactory(app))
        .poolName(app).maxSize(MAX_SIZE).initialSize(MAX_SIZE)
        .maxAcquireTime(Duration.ofSeconds(2))
        .maxLifeTime(Duration.ofSeconds(SECONDS / 3))
        .keepaliveInterval(Duration.ofSeconds(Math.max(1, SECONDS / 12)))
        .backgroundEvictionInterval(Duration.ofSeconds(1))
        .build();
    pool.warmup().block(Duration.ofSeconds(30));
    watch = Backends.watchMax(app, Duration.ofMillis(50));

    loops = LoadLoops.builder(pool).work(this::work).start();
    cancellers = Flux.interval(Duration.ofMillis(5))
        .onBackpressureDrop()
        .subscribe(tick -> new CancelledAcquire(
            ThreadLocalRandom.current().nextLong(3_000_000)).start());

    Await.until("10 s of load", Duration.ofSeconds(30), () -> loops.elapsedSeconds() >= 10);
    long heapAt10s = usedHeapAfterGc();
    Await.until("half the run", Duration.ofSeconds(SECONDS),
        () -> loops.elapsedSeconds() >= SECONDS / 2);
    pool.softEvict().block(Duration.ofSeconds(30));
    Await.until("the end of the run", Duration.ofSeconds(SECONDS),
        () -> loops.elapsedSeconds() >= SECONDS);
    long heapAtEnd = usedHeapAfterGc();
    int end = loops.elapsedSeconds();
    cancellers.dispose();
    loops.stop(Duration.ofSeconds(30));
    Await.until("every connection came back", () -> cancellerOutstanding.get() == 0
        && pool.stats().acquired() == 0 && pool.stats().pending() == 0);
    PoolStats s = pool.stats();
    Await.until("the server has as many backends as the pool",
        () -> backends.count(app) == pool.stats().allocated());

    long rows1 = count("v = 1");
    long rowsNotCommitted = count("v <> 1");
    long p99First = loops.percentileMicros(0.99, 0, 10);
    long p99Last = loops.percentileMicros(0.99, end - 10, end);
    String figures = String.format("%d s, %,d ops (%,d in the first 10 s, %,d in the last 10 s),"
            + " p99 first 10 s %,d us vs last 10 s %,d us, p50 %,d us; heap after GC at 10 s %,d KB,"
            + " at the end %,d KB (%+,d KB); committed %,d, rolled back %,d, SQL errors %,d,"
            + " abandoned transactions %,d, cancelled queries %,d, acquires cancelled %,d (served"
            + " before the cancel %,d); connections created %,d (lifetime %d s, one soft eviction),"
            + " max backends %d; failures %s; pool %s",
        end, loops.ops(), loops.opsBetween(0, 10), loops.opsBetween(end - 10, end), p99First,
        p99Last, loops.percentileMicros(0.5), heapAt10s >> 10, heapAtEnd >> 10,
        (heapAtEnd - heapAt10s) >> 10, committed.sum(), rolledBack.sum(), sqlErrors.sum(),
        abandonedTransactions.sum(), cancelledQueries.sum(), cancelledAcquires.sum(),
        servedBeforeCancel.sum(), s.created(), SECONDS / 3, watch.max(),
        loops.failuresByCause(), s);
    System.out.println("[reliability] soak: " + figures);

    for (LongAdder part : new LongAdder[] {committed, rolledBack, sqlErrors, abandonedTransactions,
        cancelledQueries, cancelledAcquires}) {
      assertThat(part.sum()).as("every part of the mix ran; " + figures).isPositive();
    }
    assertThat(s.acquired()).as("nothing lent at the end; " + figures).isZero();
    assertThat(s.pending()).as(figures).isZero();
    assertThat(s.allocated()).as("open connections are idle; " + figures).isEqualTo(s.idle());
    assertThat(s.abandoned()).as("no connection was dropped without close(); " + figures).isZero();
    assertThat(rows1).as("every committed row, and only those, is there; " + figures)
        .isEqualTo(committed.sum());
    assertThat(rowsNotCommitted)
        .as("rolled-back and abandoned transactions left no row; " + figures).isZero();
    assertThat(s.created()).as("lifetime and soft eviction replaced the connections; " + figures)
        .isGreaterThanOrEqualTo(3L * MAX_SIZE);
    assertThat(heapAtEnd - heapAt10s).as("heap growth after GC; " + figures)
        .isLessThan(HEAP_GROWTH_BOUND);
    assertThat(loops.opsBetween(end - 10, end)).as("the load still ran at the end; " + figures)
        .isPositive();
    assertThat(p99Last).as("p99 of the last 10 s below maxAcquireTime; " + figures)
        .isLessThan(Duration.ofSeconds(2).toNanos() / 1_000);
    assertThat(loops.failures()).as("operations that failed for other reasons than the workload's"
        + " own errors (at most 0.1 %); " + figures).isLessThanOrEqualTo(loops.ops() / 1_000);
    watch.assertHealthy();
    assertThat(watch.max()).as("backends, counting closes the server has not finished; " + figures)
        .isLessThanOrEqualTo(2 * MAX_SIZE);
    for (LoadLoops.Failure f : loops.failureLog()) {
      assertThat(f.error()).as("the only failures allowed are acquire timeouts")
          .isInstanceOf(io.lagoon.PoolAcquireTimeoutException.class);
    }

    pool.close().block(Duration.ofSeconds(30));
    backends.awaitCount(app, 0, Duration.ofSeconds(30));
  }

  /** One operation of the mix, on a borrowed connection. */
  private Publisher<?> work(Connection c) {
    int dice = ThreadLocalRandom.current().nextInt(100);
    if (dice < 50) {
      return LoadLoops.SELECT_ONE.apply(c);
    }
    if (dice < 65) {
      return Mono.from(c.beginTransaction())
          .then(exec(c, "INSERT INTO " + table + " (v) VALUES (1)"))
          .then(Mono.from(c.commitTransaction()))
          .doOnSuccess(v -> committed.increment());
    }
    if (dice < 75) {
      return Mono.from(c.beginTransaction())
          .then(exec(c, "INSERT INTO " + table + " (v) VALUES (2)"))
          .then(Mono.from(c.rollbackTransaction()))
          .doOnSuccess(v -> rolledBack.increment());
    }
    if (dice < 85) {
      return expectDivisionByZero(exec(c, "SELECT 1/0"), sqlErrors);
    }
    if (dice < 90) {
      // An error inside a transaction, and the borrower closes without a rollback.
      return Mono.from(c.beginTransaction())
          .then(exec(c, "INSERT INTO " + table + " (v) VALUES (3)"))
          .then(expectDivisionByZero(exec(c, "SELECT 1/0"), abandonedTransactions));
    }
    return Flux.from(c.createStatement("SELECT pg_sleep(0.02)").execute())
        .flatMap(r -> r.map((row, meta) -> 1))
        .doOnCancel(cancelledQueries::increment)
        .take(Duration.ofMillis(5)); // cancels the query mid-flight
  }

  private static Mono<Void> exec(Connection c, String sql) {
    return Flux.from(c.createStatement(sql).execute()).flatMap(Result::getRowsUpdated).then();
  }

  private static Mono<Void> expectDivisionByZero(Mono<Void> op, LongAdder counter) {
    return op.then(Mono.<Void>error(new AssertionError("SELECT 1/0 succeeded")))
        .onErrorResume(e -> e instanceof R2dbcException r && "22012".equals(r.getSqlState()),
            e -> {
              counter.increment();
              return Mono.empty();
            });
  }

  /**
   * An acquire cancelled after a random delay, most often while it waits in the queue. A
   * connection delivered before the cancel is held a moment and closed; one delivered as the
   * cancel happens is closed at once (this subscriber owns it either way).
   */
  private final class CancelledAcquire implements CoreSubscriber<Connection> {
    private final long cancelAfterNanos;
    private final AtomicInteger state = new AtomicInteger(); // 0 waiting, 1 served, 2 cancelled
    private volatile Subscription subscription;

    CancelledAcquire(long cancelAfterNanos) {
      this.cancelAfterNanos = cancelAfterNanos;
    }

    void start() {
      cancellerOutstanding.incrementAndGet();
      pool.create().subscribe(this);
      Schedulers.parallel().schedule(this::cancel, cancelAfterNanos, TimeUnit.NANOSECONDS);
    }

    @Override
    public void onSubscribe(Subscription s) {
      subscription = s;
      s.request(1);
    }

    private void cancel() {
      if (state.compareAndSet(0, 2)) {
        subscription.cancel();
        cancelledAcquires.increment();
        cancellerOutstanding.decrementAndGet();
      }
    }

    @Override
    public void onNext(Connection c) {
      boolean first = state.compareAndSet(0, 1);
      if (first) {
        servedBeforeCancel.increment();
      }
      Mono.from(c.close()).subscribe(null, e -> {}, () -> {
        if (first) {
          cancellerOutstanding.decrementAndGet();
        }
      });
    }

    @Override
    public void onError(Throwable t) {
      if (state.compareAndSet(0, 1)) {
        cancellerOutstanding.decrementAndGet();
      }
    }

    @Override
    public void onComplete() {}
  }

  private long count(String where) {
    Long n = Sql.one(PostgresSupport.connectionFactory(),
        "SELECT count(*) FROM " + table + " WHERE " + where, Long.class);
    return n == null ? -1 : n;
  }

  /** Runs one statement on a connection of its own (not the pool's). */
  private static void execute(String sql) {
    Sql.exec(PostgresSupport.connectionFactory(), sql);
  }
}
