package io.lagoon.testing;

import io.r2dbc.spi.Connection;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import reactor.core.Disposable;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.core.scheduler.Schedulers;

/**
 * The PostgreSQL server's view of one pool's sessions, seen from a monitor connection of its own
 * ({@link PostgresSupport}'s, application name {@code lagoon-tests}). Every query filters on an
 * application name, so a test only ever counts or terminates the backends carrying its own
 * {@link #marker}; the server is shared with other test runs.
 *
 * <p>The blocking methods are for test threads. Not thread-safe: one test thread uses it.
 */
public final class Backends implements AutoCloseable {

  private static final Duration BOUND = Duration.ofSeconds(30);

  private final Connection monitor;

  private Backends(Connection monitor) {
    this.monitor = monitor;
  }

  /** Opens the monitor connection (blocking). */
  public static Backends connect() {
    return new Backends(open());
  }

  private static Connection open() {
    Connection c = Mono.from(PostgresSupport.connectionFactory().create()).block(BOUND);
    if (c == null) {
      throw new IllegalStateException("no monitor connection to PostgreSQL");
    }
    return c;
  }

  /**
   * A unique application name, {@code lagoon-<what>-<8 hex digits>}: the only backends a test
   * counts or terminates are those carrying its own.
   */
  public static String marker(String what) {
    return "lagoon-" + what + "-" + UUID.randomUUID().toString().substring(0, 8);
  }

  /**
   * The monitor connection itself, for the test's own statements outside any pool (creating its
   * tables, reading pg_locks); closed by {@link #close()}.
   */
  public Connection monitor() {
    return monitor;
  }

  // ---------------------------------------------------------------- one connection's backend

  /** The pid of the backend behind {@code c}: {@code SELECT pg_backend_pid()} on it. */
  public static Mono<Integer> pidOf(Connection c) {
    return Sql.column(c, "SELECT pg_backend_pid()", Integer.class).single();
  }

  /** {@link #pidOf}, blocking. */
  public static int pid(Connection c) {
    Integer pid = pidOf(c).block(BOUND);
    if (pid == null) {
      throw new IllegalStateException("no answer to SELECT pg_backend_pid()");
    }
    return pid;
  }

  // ---------------------------------------------------------------- one application's backends

  /** Backends whose application_name is {@code app} (never the monitor's own). */
  public Mono<Integer> countMono(String app) {
    return countOn(monitor, app);
  }

  private static Mono<Integer> countOn(Connection c, String app) {
    return Flux.defer(() -> c.createStatement("SELECT count(*)::int FROM pg_stat_activity"
                + " WHERE application_name = $1 AND pid <> pg_backend_pid()")
            .bind("$1", app).execute())
        .flatMap(r -> r.map((row, meta) -> row.get(0, Integer.class)))
        .single();
  }

  private static Mono<List<Integer>> pidsOn(Connection c, String app) {
    return Flux.defer(() -> c.createStatement("SELECT pid FROM pg_stat_activity"
                + " WHERE application_name = $1 AND pid <> pg_backend_pid()")
            .bind("$1", app).execute())
        .flatMap(r -> r.map((row, meta) -> row.get(0, Integer.class)))
        .collectList();
  }

  public int count(String app) {
    Integer n = countMono(app).block(BOUND);
    return n == null ? 0 : n;
  }

  /** The pids of the backends whose application_name is {@code app}. */
  public List<Integer> pids(String app) {
    return pidsOn(monitor, app).block(BOUND);
  }

  /**
   * The pids of the backends whose application_name is {@code app} and whose state is {@code
   * LIKE stateLike} ({@code "idle"}, {@code "active"}, ...).
   */
  public List<Integer> pids(String app, String stateLike) {
    return Flux.defer(() -> monitor.createStatement("SELECT pid FROM pg_stat_activity"
                + " WHERE application_name = $1 AND pid <> pg_backend_pid() AND state LIKE $2")
            .bind("$1", app).bind("$2", stateLike).execute())
        .flatMap(r -> r.map((row, meta) -> row.get(0, Integer.class)))
        .collectList()
        .block(BOUND);
  }

  /**
   * Terminates every backend whose application_name is {@code app} with {@code
   * pg_terminate_backend(pid, wait)}: each call returns once that backend has exited, or false
   * after {@code wait}. Returns pid → terminated, in the server's order. One statement.
   */
  public Map<Integer, Boolean> terminateAll(String app, Duration wait) {
    Map<Integer, Boolean> out = new LinkedHashMap<>();
    Flux.defer(() -> monitor.createStatement("SELECT pid, pg_terminate_backend(pid, $2)"
                + " FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()")
            .bind("$1", app).bind("$2", wait.toMillis()).execute())
        .flatMap(r -> r.map((row, meta) -> Map.entry(row.get(0, Integer.class),
            Boolean.TRUE.equals(row.get(1, Boolean.class)))))
        .doOnNext(e -> out.put(e.getKey(), e.getValue()))
        .blockLast(BOUND.plus(wait));
    return out;
  }

  /**
   * Terminates exactly {@code pids}, each only while its application_name is still {@code app},
   * with {@code pg_terminate_backend(pid, wait)}: each call returns once that backend has exited,
   * or false after {@code wait}; with a zero {@code wait} it returns at once, true once the signal
   * was sent. Returns pid → terminated; false too for a pid that is no backend of {@code app}.
   */
  public Map<Integer, Boolean> terminate(String app, List<Integer> pids, Duration wait) {
    Map<Integer, Boolean> out = new LinkedHashMap<>();
    for (Integer pid : pids) {
      Boolean done = Flux.defer(() -> monitor.createStatement("SELECT pg_terminate_backend(pid, $3)"
                  + " FROM pg_stat_activity WHERE pid = $1 AND application_name = $2")
              .bind("$1", pid).bind("$2", app).bind("$3", wait.toMillis()).execute())
          .flatMap(r -> r.map((row, meta) -> Boolean.TRUE.equals(row.get(0, Boolean.class))))
          .singleOrEmpty()
          .defaultIfEmpty(false)
          .block(BOUND.plus(wait));
      out.put(pid, Boolean.TRUE.equals(done));
    }
    return out;
  }

  /** Polls until this app has {@code expected} backends, at most {@code bound}; throws if not. */
  public void awaitCount(String app, int expected, Duration bound) {
    int[] last = {-1};
    Await.until(() -> "application " + app + " has " + expected + " backends (it has " + last[0]
        + ")", bound, () -> (last[0] = count(app)) == expected);
  }

  /** Polls until none of {@code pids} is a backend of {@code app} any more. */
  public void awaitGone(String app, List<Integer> pids) {
    Await.until(() -> "backends " + pids + " of " + app + " exited", BOUND,
        () -> pids(app).stream().noneMatch(pids::contains));
  }

  /**
   * Polls the number of this app's backends every {@code every} on a monitor connection of its
   * own until disposed, keeping the largest count seen and the number of polls.
   */
  public static Watch watchMax(String app, Duration every) {
    return new Watch(open(), app, every, Set.of());
  }

  /**
   * As {@link #watchMax(String, Duration)}, not counting the pids in {@code dying}: a terminated
   * backend stays listed for a moment after its client saw the connection close, while the pool
   * may already have opened the replacement.
   */
  public static Watch watchMax(String app, Duration every, Set<Integer> dying) {
    return new Watch(open(), app, every, dying);
  }

  /** A running poll of one app's backend count; see {@link #watchMax}. */
  public static final class Watch implements AutoCloseable {
    private final Connection connection;
    private final AtomicInteger max = new AtomicInteger();
    private final AtomicInteger polls = new AtomicInteger();
    private final AtomicBoolean closed = new AtomicBoolean();
    private final Disposable poll;
    private volatile Throwable error;

    private Watch(Connection connection, String app, Duration every, Set<Integer> dying) {
      this.connection = connection;
      this.poll = Flux.interval(every, Schedulers.parallel())
          .onBackpressureDrop()
          .concatMap(tick -> pidsOn(connection, app)
              .map(pids -> (int) pids.stream().filter(p -> !dying.contains(p)).count()), 1)
          .subscribe(n -> {
            max.accumulateAndGet(n, Math::max);
            polls.incrementAndGet();
          }, e -> error = e);
    }

    /** Throws if polling failed (the figures would stop short). */
    public void assertHealthy() {
      Throwable e = error;
      if (e != null) {
        throw new AssertionError("polling the backends failed after " + polls() + " polls", e);
      }
    }

    /** The largest number of backends seen so far. */
    public int max() {
      return max.get();
    }

    /** Polls answered so far. */
    public int polls() {
      return polls.get();
    }

    /** Stops polling and closes its connection; a second call does nothing. */
    @Override
    public void close() {
      if (closed.compareAndSet(false, true)) {
        poll.dispose();
        Mono.from(connection.close()).block(BOUND);
      }
    }
  }

  @Override
  public void close() {
    Mono.from(monitor.close()).block(BOUND);
  }
}
