package io.lagoon.examples.quickstart;

import io.lagoon.ConnectionPool;
import io.lagoon.PoolStats;
import io.r2dbc.h2.CloseableConnectionFactory;
import io.r2dbc.h2.H2ConnectionFactory;
import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactories;
import io.r2dbc.spi.ConnectionFactory;
import io.r2dbc.spi.Result;
import io.r2dbc.spi.Statement;
import java.io.PrintStream;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.atomic.AtomicLongArray;
import reactor.core.Disposable;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.core.scheduler.Scheduler;
import reactor.core.scheduler.Schedulers;

/**
 * Lagoon in one file: build a pool in code, use it with {@code withConnection} and {@code
 * inTransaction}, put it under load and watch {@link ConnectionPool#stats()}.
 *
 * <p>Runs against an in-memory H2 database unless an R2DBC URL is given as the first argument or in
 * the environment variable {@value #URL_ENV}, e.g. {@code
 * r2dbc:postgresql://postgres@127.0.0.1:5432/test}.
 */
public final class Quickstart {

  /** Environment variable that may hold the R2DBC URL of the database to use. */
  public static final String URL_ENV = "LAGOON_QUICKSTART_URL";

  static final int MAX_SIZE = 10;
  static final int ROWS = 50;
  static final int OPERATIONS = 2_000;
  static final int CONCURRENCY = 200;
  /** How often a timer on Reactor's parallel scheduler reads stats() during the burst. */
  static final Duration SAMPLE_EVERY = Duration.ofMillis(5);
  /** How many of those mid-burst readings the table shows (spread over the burst). */
  static final int SAMPLES_SHOWN = 4;

  private static final String TABLE = "quickstart_item";

  /**
   * Where the burst runs its SQL. H2's R2DBC driver executes a statement on the thread that
   * subscribes to it (it wraps H2's blocking engine), so without this hop the thread that returns a
   * connection to the pool would run the next borrower's SQL itself and the operations would run
   * one after another. Harmless with a non-blocking driver such as r2dbc-postgresql.
   */
  private static final Scheduler SQL_THREADS = Schedulers.boundedElastic();

  private Quickstart() {}

  public static void main(String[] args) {
    String url = args.length > 0 ? args[0] : System.getenv(URL_ENV);
    run(url == null || url.isBlank() ? null : url.strip(), System.out);
  }

  /**
   * Runs the whole walkthrough, printing to {@code out}; blocks until it is done (this is a main
   * program: in a reactive application you would compose the Monos instead of blocking on them).
   *
   * @param url an R2DBC URL, or {@code null} for an in-memory H2 database
   * @return the pool's stats after it was closed
   */
  public static PoolStats run(String url, PrintStream out) {
    // 1. A driver ConnectionFactory: Lagoon pools any R2DBC driver.
    CloseableConnectionFactory h2 = url == null ? H2ConnectionFactory.inMemory("quickstart") : null;
    ConnectionFactory driver = h2 != null ? h2 : ConnectionFactories.get(url);
    out.println("Lagoon quickstart");
    out.println("  database: " + (h2 != null
        ? "H2, in memory (pass an R2DBC URL as argument or in " + URL_ENV + " to use another)"
        : redact(url) + " (" + driver.getMetadata().getName() + ")"));

    // 2. The pool, itself a ConnectionFactory. It starts opening connections in the background.
    ConnectionPool pool = ConnectionPool.builder(driver)
        .maxSize(MAX_SIZE)
        .poolName("quickstart")
        .maxAcquireTime(Duration.ofSeconds(10))
        .build();
    out.println("  pool:     " + pool.name() + ", maxSize " + MAX_SIZE);
    out.println();

    StatsTable table = new StatsTable();
    try {
      // 3. Schema and data. withConnection returns the connection to the pool when done.
      pool.withConnection(c -> update(c, "DROP TABLE IF EXISTS " + TABLE)
              .then(update(c, "CREATE TABLE " + TABLE
                  + " (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL, qty INT NOT NULL)")))
          .blockLast();
      out.println("Created table " + TABLE + " (pool.withConnection)");

      // inTransaction: committed if the work completes, rolled back if it fails or is cancelled.
      Long inserted = pool.inTransaction(c -> Flux.range(1, ROWS)
              .concatMap(id -> update(c, "INSERT INTO " + TABLE
                  + " (id, name, qty) VALUES ($1, $2, 0)", id, "item-" + id)))
          .reduce(0L, Long::sum)
          .block();
      out.println("Inserted " + inserted + " rows in one transaction (pool.inTransaction)");
      out.println();

      table.add("before burst", pool.stats());
      Burst burst = burst(pool, table);
      table.add("after burst", pool.stats());

      out.printf(Locale.ROOT, "Burst: %,d operations, at most %d in flight, on a pool of %d"
              + " connections%n", OPERATIONS, CONCURRENCY, MAX_SIZE);
      out.printf(Locale.ROOT, "  half are queries  : pool.withConnection(c -> SELECT one row)%n");
      out.printf(Locale.ROOT, "  half are updates  : pool.inTransaction(c -> UPDATE one row)%n");
      out.printf(Locale.ROOT, "  elapsed %d ms, throughput %,.0f ops/s%n",
          burst.elapsedNanos / 1_000_000, OPERATIONS / (burst.elapsedNanos / 1e9));
      out.println();
      out.println("Acquire wait: from subscribing to the operation until the pool handed a"
          + " connection to its code");
      out.println("(for updates this also includes the BEGIN that inTransaction sends first)");
      out.printf(Locale.ROOT, "  %-22s %6s %10s %10s %10s %10s%n", "", "ops", "p50", "p90", "p99",
          "max");
      printWaits(out, "queries (withConnection)", burst.queryWaits);
      printWaits(out, "updates (inTransaction)", burst.updateWaits);
      out.println();

      long total = pool.withConnection(c -> Flux.from(c.createStatement(
                  "SELECT SUM(qty) FROM " + TABLE).execute())
              .flatMap(r -> r.map((row, meta) -> row.get(0, Number.class).longValue())))
          .blockLast();
      long expected = OPERATIONS / 2;
      out.printf(Locale.ROOT, "Check: SUM(qty) = %d, expected %d (one per committed update): %s%n",
          total, expected, total == expected ? "OK" : "MISMATCH");
      if (total != expected) {
        throw new IllegalStateException("SUM(qty) is " + total + ", expected " + expected);
      }
      pool.withConnection(c -> update(c, "DROP TABLE " + TABLE)).blockLast();
    } finally {
      // 4. Close the pool: idle connections are closed now, lent ones when they come back.
      pool.close().block(Duration.ofSeconds(30));
      table.add("after close", pool.stats());
      if (h2 != null) {
        h2.close().block(Duration.ofSeconds(10));
      }
    }
    out.println();
    out.println("pool.stats() (gauges: allocated = idle + acquired + opening/closing; "
        + "counters: since the pool was built)");
    table.print(out);
    return pool.stats();
  }

  /** Fires the operations, reading stats() every few milliseconds while they run. */
  private static Burst burst(ConnectionPool pool, StatsTable table) {
    AtomicLongArray waits = new AtomicLongArray(OPERATIONS);
    List<Sample> samples = new ArrayList<>();
    long start = System.nanoTime();
    Disposable sampler = Flux.interval(SAMPLE_EVERY, SAMPLE_EVERY, Schedulers.parallel())
        .subscribe(tick -> {
          PoolStats stats = pool.stats();
          synchronized (samples) {
            samples.add(new Sample(System.nanoTime() - start, stats));
          }
        });
    try {
      Flux.range(0, OPERATIONS)
          .flatMap(i -> operation(pool, i, waits), CONCURRENCY)
          .blockLast(Duration.ofMinutes(2));
    } finally {
      sampler.dispose();
    }
    long elapsed = System.nanoTime() - start;

    List<Sample> taken;
    synchronized (samples) {
      taken = new ArrayList<>(samples);
    }
    taken.removeIf(s -> s.atNanos > elapsed);
    if (taken.isEmpty()) {
      table.note("(the burst ended before the first " + SAMPLE_EVERY.toMillis() + " ms sample)");
    }
    int shown = Math.min(SAMPLES_SHOWN, taken.size());
    for (int k = 1; k <= shown; k++) {
      // spread the shown samples evenly over the burst (at 1/5, 2/5, ... of the samples taken)
      Sample s = taken.get(k * taken.size() / (shown + 1));
      table.add(String.format(Locale.ROOT, "during, +%d ms", s.atNanos / 1_000_000), s.stats);
    }

    long[] queries = new long[OPERATIONS / 2 + 1];
    long[] updates = new long[OPERATIONS / 2 + 1];
    int q = 0;
    int u = 0;
    for (int i = 0; i < OPERATIONS; i++) {
      if (isQuery(i)) {
        queries[q++] = waits.get(i);
      } else {
        updates[u++] = waits.get(i);
      }
    }
    return new Burst(elapsed, Arrays.copyOf(queries, q), Arrays.copyOf(updates, u));
  }

  /**
   * One operation. The clock starts when the operation is subscribed to and stops when the pool
   * calls our code with the connection, so it measures the wait for the pool (plus, for
   * inTransaction, its BEGIN), not the SQL we run afterwards.
   */
  private static Mono<Void> operation(ConnectionPool pool, int i, AtomicLongArray waits) {
    int id = 1 + (i * 7919) % ROWS;
    return Mono.defer(() -> {
      long subscribed = System.nanoTime();
      Flux<?> work = isQuery(i)
          ? pool.withConnection(c -> {
              waits.set(i, System.nanoTime() - subscribed);
              return Flux.defer(() -> c.createStatement(
                      "SELECT name, qty FROM " + TABLE + " WHERE id = $1").bind(0, id).execute())
                  .flatMap(r -> r.map((row, meta) -> row.get("name", String.class)))
                  .subscribeOn(SQL_THREADS);
            })
          : pool.inTransaction(c -> {
              waits.set(i, System.nanoTime() - subscribed);
              return update(c, "UPDATE " + TABLE + " SET qty = qty + 1 WHERE id = $1", id)
                  .subscribeOn(SQL_THREADS);
            });
      return work.then();
    });
  }

  private static boolean isQuery(int i) {
    return i % 2 == 0;
  }

  /**
   * Runs one SQL statement when subscribed to, binding {@code $1, $2, ...}; emits the number of
   * rows it changed.
   */
  private static Mono<Long> update(Connection c, String sql, Object... params) {
    return Mono.defer(() -> {
      Statement statement = c.createStatement(sql);
      for (int p = 0; p < params.length; p++) {
        statement.bind(p, params[p]);
      }
      return Flux.from(statement.execute())
          .flatMap(Result::getRowsUpdated)
          .reduce(0L, Long::sum);
    });
  }

  private static void printWaits(PrintStream out, String label, long[] nanos) {
    long[] sorted = nanos.clone();
    Arrays.sort(sorted);
    out.printf(Locale.ROOT, "  %-24s %4d %10s %10s %10s %10s%n", label, sorted.length,
        millis(percentile(sorted, 50)), millis(percentile(sorted, 90)),
        millis(percentile(sorted, 99)), millis(sorted[sorted.length - 1]));
  }

  /** Nearest-rank percentile of sorted values. */
  static long percentile(long[] sorted, double p) {
    int rank = (int) Math.ceil(p / 100.0 * sorted.length);
    return sorted[Math.max(0, Math.min(sorted.length - 1, rank - 1))];
  }

  private static String millis(long nanos) {
    return String.format(Locale.ROOT, "%.3f ms", nanos / 1e6);
  }

  /** The URL without its password, if it has one. */
  static String redact(String url) {
    return url.replaceAll("(//[^:/@]+:)[^@/]*@", "$1***@");
  }

  private record Sample(long atNanos, PoolStats stats) {}

  private record Burst(long elapsedNanos, long[] queryWaits, long[] updateWaits) {}

  /** The rows of the stats table, printed at the end so they line up. */
  private static final class StatsTable {
    private final List<String> labels = new ArrayList<>();
    private final List<PoolStats> rows = new ArrayList<>();
    private final List<String> notes = new ArrayList<>();

    void add(String label, PoolStats stats) {
      labels.add(label);
      rows.add(stats);
    }

    void note(String note) {
      notes.add(note);
    }

    void print(PrintStream out) {
      String format = "  %-16s %9s %5s %8s %7s | %8s %7s %6s %8s %8s%n";
      out.printf(Locale.ROOT, format, "", "allocated", "idle", "acquired", "pending",
          "acquires", "created", "closed", "timeouts", "rejected");
      for (int r = 0; r < rows.size(); r++) {
        PoolStats s = rows.get(r);
        out.printf(Locale.ROOT, format, labels.get(r), s.allocated(), s.idle(), s.acquired(),
            s.pending(), s.acquires(), s.created(), s.closed(), s.timeouts(), s.rejections());
      }
      notes.forEach(n -> out.println("  " + n));
    }
  }
}
