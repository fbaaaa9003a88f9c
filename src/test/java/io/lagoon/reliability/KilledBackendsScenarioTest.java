package io.lagoon.reliability;

import static org.assertj.core.api.Assertions.assertThat;

import io.lagoon.ConnectionPool;
import io.lagoon.PoolStats;
import io.lagoon.testing.Await;
import io.lagoon.testing.Backends;
import io.lagoon.testing.LoadLoops;
import io.lagoon.testing.PidTrackingFactory;
import io.lagoon.testing.PostgresSupport;
import io.r2dbc.spi.R2dbcException;
import io.r2dbc.spi.R2dbcNonTransientResourceException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * Scenario 3, killed backends: while 64 loops of acquire → {@code SELECT 1} → close run through a
 * pool of 10, every backend of the pool is terminated ({@code pg_terminate_backend}) every 2 s,
 * five times. Only the operations that held a killed connection fail; a connection whose backend
 * died is never lent again; the server never sees more than 10 backends of this pool.
 *
 * <p>Each kill waits until the pool is back at full strength (10 connections open and lent, 10
 * backends) and at least 2 s have passed, so every kill hits a saturated pool. In flight at a
 * kill is the most {@link LoadLoops#holding()} read in the millisecond before the kill statement;
 * the failures of a kill are those between it and the next one.
 */
class KilledBackendsScenarioTest {

  private static final int KILLS = 5;
  private static final int MAX_SIZE = 10;
  private static final Duration EVERY = Duration.ofSeconds(2);

  private final String app = Backends.marker("s3");
  private ConnectionPool pool;
  private LoadLoops loops;
  private Backends backends;
  private Backends.Watch watch;
  private final java.util.Set<Integer> dying = java.util.concurrent.ConcurrentHashMap.newKeySet();

  @AfterEach
  void cleanUp() {
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
      backends.close();
    }
  }

  private record Kill(int inFlight, int killed, long failuresBefore) {}

  @Test
  void onlyOperationsHoldingAKilledConnectionFailAndNoDeadConnectionIsLentAgain() {
    PidTrackingFactory driver = new PidTrackingFactory(PostgresSupport.connectionFactory(app));
    pool = ConnectionPool.builder(driver).poolName(app).maxSize(MAX_SIZE).initialSize(MAX_SIZE)
        .maxAcquireTime(Duration.ofSeconds(2)).build();
    backends = Backends.connect();
    watch = Backends.watchMax(app, Duration.ofMillis(10), dying);
    pool.warmup().block(Duration.ofSeconds(30));

    loops = LoadLoops.builder(pool).start();
    long lastKill = System.nanoTime();
    List<Kill> kills = new ArrayList<>();
    long opsBeforeKills = 0;
    for (int k = 0; k < KILLS; k++) {
      awaitFullStrengthAnd(lastKill);
      if (k == 0) {
        opsBeforeKills = loops.ops();
        assertThat(loops.failures()).as("no failure before the first kill: %s", loops).isZero();
      }
      long failuresBefore = loops.failures();
      int inFlight = maxHoldingOver(Duration.ofMillis(1));
      List<Integer> victims = backends.pids(app);
      dying.addAll(victims); // counted no more: a killed backend lingers a moment in the view
      Map<Integer, Boolean> terminated = backends.terminate(app, victims, Duration.ofSeconds(5));
      lastKill = System.nanoTime();
      assertThat(terminated).as("kill %d: every backend of the pool exited", k + 1)
          .isNotEmpty().doesNotContainValue(false);
      driver.killed(terminated.keySet());
      kills.add(new Kill(inFlight, terminated.size(), failuresBefore));
    }
    awaitFullStrengthAnd(lastKill);
    long opsBeforeStop = loops.ops();
    Await.until("operations go on after the kills", () -> loops.ops() > opsBeforeStop + 1_000);
    loops.stop(Duration.ofSeconds(30));
    long failuresAtEnd = loops.failures();

    List<Long> failed = new ArrayList<>();
    for (int k = 0; k < kills.size(); k++) {
      long next = k + 1 < kills.size() ? kills.get(k + 1).failuresBefore() : failuresAtEnd;
      failed.add(next - kills.get(k).failuresBefore());
    }
    String figures = "kills=" + kills.size()
        + ", per kill in-flight/failed/backends killed=" + perKill(kills, failed)
        + ", lends of a killed backend after its kill (per pid, at most 1 allowed)="
        + maxOf(driver.lendsAfterKill()) + " max over " + driver.lendsAfterKill().size()
        + " pids, max backends seen=" + watch.max() + " (" + watch.polls() + " polls), ops before"
        + " the first kill=" + opsBeforeKills + ", " + loops.summary()
        + ", pool " + pool.stats();
    System.out.println("[reliability] killed-backends: " + figures);

    for (int k = 0; k < kills.size(); k++) {
      assertThat(failed.get(k))
          .as("kill %d: failed operations <= operations holding a connection at the kill; %s",
              k + 1, figures)
          .isLessThanOrEqualTo(kills.get(k).inFlight())
          .isLessThanOrEqualTo(kills.get(k).killed());
    }
    assertThat(failuresAtEnd).as("the kills did hit queries in flight; " + figures).isPositive();
    for (LoadLoops.Failure f : loops.failureLog()) {
      assertThat(meansDeadConnection(f.error()))
          .as("every failure says the connection died (no timeout, no pool error): %s", f.error())
          .isTrue();
    }
    assertThat(driver.lendsAfterKill().values())
        .as("a dead connection reaches at most the one borrower that finds it dead; " + figures)
        .allMatch(n -> n <= 1);
    assertThat(driver.successesAfterKill()).as("nothing succeeded on a killed backend").isZero();
    watch.assertHealthy();
    assertThat(watch.max()).as("backends of this pool seen by the server; " + figures)
        .isLessThanOrEqualTo(MAX_SIZE);
    PoolStats s = pool.stats();
    assertThat(s.acquired()).as("nothing lent after the loops stopped: " + s).isZero();
    assertThat(s.pending()).isZero();
    assertThat(s.closed()).as("every killed connection was closed: " + s)
        .isGreaterThanOrEqualTo(kills.stream().mapToLong(Kill::killed).sum());
  }

  /**
   * The most operations holding a connection during the last {@code window} before the kill,
   * read on this thread without pause: a connection handed over through the pool's delivery queue
   * is counted by nobody for a few microseconds, and one reading could fall in such a gap.
   */
  private int maxHoldingOver(Duration window) {
    long until = System.nanoTime() + window.toNanos();
    int max = 0;
    do {
      max = Math.max(max, loops.holding());
    } while (System.nanoTime() < until);
    return max;
  }

  /** Waits until 10 connections are open and lent, 10 backends exist, and 2 s passed since {@code since}. */
  private void awaitFullStrengthAnd(long since) {
    Await.until("the pool is back at full strength: " + MAX_SIZE + " connections lent", () -> {
      PoolStats s = pool.stats();
      return System.nanoTime() - since >= EVERY.toNanos() && s.allocated() == MAX_SIZE
          && s.acquired() == MAX_SIZE && backends.count(app) == MAX_SIZE;
    });
  }

  /** What the pool counts as a dead connection: a non-transient resource error or SQLSTATE 08 / 57P0x. */
  private static boolean meansDeadConnection(Throwable error) {
    for (Throwable t = error; t != null; t = t.getCause() == t ? null : t.getCause()) {
      if (t instanceof R2dbcNonTransientResourceException) {
        return true;
      }
      if (t instanceof R2dbcException r && r.getSqlState() != null
          && (r.getSqlState().startsWith("08") || r.getSqlState().startsWith("57P0"))) {
        return true;
      }
    }
    return false;
  }

  private static String perKill(List<Kill> kills, List<Long> failed) {
    List<String> parts = new ArrayList<>();
    for (int k = 0; k < kills.size(); k++) {
      parts.add(kills.get(k).inFlight() + "/" + failed.get(k) + "/" + kills.get(k).killed());
    }
    return String.join(" ", parts);
  }

  private static int maxOf(Map<Integer, Integer> m) {
    return m.values().stream().mapToInt(Integer::intValue).max().orElse(0);
  }
}
