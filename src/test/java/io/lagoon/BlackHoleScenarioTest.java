package io.lagoon;

import static io.lagoon.ScenarioSupport.BOUND;
import static io.lagoon.ScenarioSupport.figures;
import static io.lagoon.ScenarioSupport.phase;
import static org.assertj.core.api.Assertions.assertThat;

import io.lagoon.testing.Backends;
import io.lagoon.testing.FaultProxy;
import io.lagoon.testing.LoadLoops;
import io.lagoon.testing.LoadLoops.Failure;
import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactories;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.reactivestreams.Publisher;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/**
 * Scenario 2, black hole: the network path to PostgreSQL goes silent for 6 s (nothing answered,
 * nothing reset) under 64 loops of acquire, {@code SELECT 1}, close on a pool of 10 with
 * {@code maxAcquireTime} 2 s. A quarter of the loops run their query in a transaction, so that
 * returned connections need a reset (a rollback) that cannot complete. The application bounds its
 * own query at 1 s, as it must: no pool can bound a query.
 */
class BlackHoleScenarioTest {

  private static final Duration MAX_ACQUIRE = Duration.ofSeconds(2);
  private static final Duration BOUNDS = Duration.ofSeconds(1); // validation, reset, close, connect
  private static final Duration QUERY_TIMEOUT = Duration.ofSeconds(1);
  private static final Duration HOLE = Duration.ofSeconds(6);

  private final String marker = Backends.marker("blackhole");
  private FaultProxy proxy;
  private ConnectionPool pool;
  private ConnectionPool probe;

  @AfterEach
  void tearDown() {
    if (proxy != null) {
      proxy.heal();
    }
    if (pool != null) {
      pool.dispose();
    }
    if (probe != null) {
      probe.dispose();
    }
    if (proxy != null) {
      proxy.close();
    }
  }

  @Test
  @Timeout(value = 60, unit = TimeUnit.SECONDS)
  void duringSixSecondsOfSilenceNothingHangsAcquiresFailAtTheirDeadlineAndTrafficResumes() {
    proxy = FaultProxy.toPostgres();
    pool = ConnectionPool.builder(ConnectionFactories.get(proxy.postgresOptions(marker)))
        .poolName(marker).maxSize(10).maxAcquireTime(MAX_ACQUIRE)
        .maxValidationTime(BOUNDS).maxCloseTime(BOUNDS).maxCreateConnectionTime(BOUNDS)
        .build();
    pool.warmup().block(BOUND);
    // A second pool validates every borrow with a round trip, so that a validation meets the hole.
    probe = ConnectionPool.builder(ConnectionFactories.get(proxy.postgresOptions(marker)))
        .poolName(marker + "-probe").maxSize(1).initialSize(1).maxAcquireTime(MAX_ACQUIRE)
        .validationQuery("SELECT 1").validationSkipWindow(Duration.ZERO)
        .maxValidationTime(Duration.ofMillis(500)).maxCloseTime(BOUNDS)
        .maxCreateConnectionTime(Duration.ofSeconds(5)).build();
    probe.warmup().block(BOUND);
    LoadLoops load = LoadLoops.builder(pool)
        .work(c -> ThreadLocalRandom.current().nextInt(4) == 0
            ? inTransaction(c) : LoadLoops.SELECT_ONE.apply(c))
        .workTimeout(QUERY_TIMEOUT)
        .maxLoggedFailures(Integer.MAX_VALUE)
        .start();

    phase(Duration.ofSeconds(2));
    long holeStart = System.nanoTime();
    double before = load.opsPerSecondBetween(holeStart - Duration.ofMillis(1500).toNanos(),
        holeStart);

    proxy.blackHole(true);
    phase(HOLE.minusSeconds(4));
    long probeStart = System.nanoTime();
    CompletableFuture<Long> probeAcquire = Mono.from(probe.create()).flatMap(c -> Mono.from(c.close()))
        .then(Mono.just(-1L))
        .onErrorResume(PoolAcquireTimeoutException.class,
            e -> Mono.just(System.nanoTime() - probeStart))
        .toFuture();
    phase(HOLE.minusSeconds(2));
    long holeEnd = System.nanoTime();
    proxy.blackHole(false);

    phase(Duration.ofSeconds(4));
    long after = System.nanoTime();
    load.stop(Duration.ofSeconds(5));

    // acquires that gave up during the hole: each at its own deadline
    List<Failure> inHole = load.failuresBetween(holeStart, holeEnd + MAX_ACQUIRE.toNanos());
    List<Long> acquireTimeouts = inHole.stream()
        .filter(f -> f.error() instanceof PoolAcquireTimeoutException)
        .map(f -> LoadLoops.ms(f.acquireNanos())).sorted().toList();
    long within100 = acquireTimeouts.stream().filter(ms -> Math.abs(ms - 2000) <= 100).count();
    long queryTimeouts = inHole.stream()
        .filter(f -> !f.acquireFailed() && f.error() instanceof TimeoutException).count();
    long otherFailures = load.failures() - acquireTimeouts.size() - queryTimeouts;
    long firstOk = load.firstSuccessAfter(holeEnd);
    long restored = load.throughputRestoredAfter(holeEnd, before, 0.5);
    double afterRate = load.opsPerSecondBetween(after - Duration.ofMillis(1500).toNanos(), after);
    long probeMs = LoadLoops.ms(probeAcquire.join());
    PoolStats stats = pool.stats();

    figures("black-hole", "hole=%d s, ops=%d, failures=%d (acquire timeouts=%d, query timeouts=%d,"
            + " other=%d), acquire timeout at min/median/max=%d/%d/%d ms (%d of %d within 2.0 s ±"
            + " 0.1 s), validation-bound acquire=%d ms, ops/s before=%.0f after=%.0f, first success"
            + " %d ms and half throughput %s after the hole; connects=%d, connect failures=%d",
        HOLE.toSeconds(), load.ops(), load.failures(), acquireTimeouts.size(), queryTimeouts,
        otherFailures, ScenarioSupport.percentile(acquireTimeouts, 0),
        ScenarioSupport.percentile(acquireTimeouts, 0.5),
        ScenarioSupport.percentile(acquireTimeouts, 1), within100, acquireTimeouts.size(), probeMs,
        before, afterRate, LoadLoops.ms(firstOk - holeEnd),
        restored < 0 ? "not" : LoadLoops.ms(restored - holeEnd) + " ms", stats.created(),
        stats.createFailures());

    assertThat(acquireTimeouts).as("waiting acquires gave up during the hole").isNotEmpty();
    assertThat(acquireTimeouts).as("each at its deadline: never early, and late only by"
        + " scheduling on a loaded machine").allSatisfy(ms ->
            assertThat(ms).isBetween(MAX_ACQUIRE.toMillis() - 10, MAX_ACQUIRE.toMillis() + 1000));
    assertThat(probeMs).as("a validation that hangs is bounded: its acquire fails at the deadline")
        .isBetween(MAX_ACQUIRE.toMillis() - 10, MAX_ACQUIRE.toMillis() + 1000);
    assertThat(probe.stats().closed()).as("the probe's hung validation closed its connection")
        .isPositive();
    assertThat(load.failuresBetween(holeEnd + MAX_ACQUIRE.toNanos() + 500_000_000L, after))
        .as("no failures once traffic resumed").isEmpty();
    assertThat(firstOk).as("traffic resumed").isPositive();
    assertThat(afterRate).as("throughput is back").isGreaterThan(before / 4);
    assertThat(stats.acquired()).isZero();
    assertThat(stats.pending()).isZero();
    assertThat(stats.allocated()).isLessThanOrEqualTo(10);
  }

  private static Publisher<?> inTransaction(Connection c) {
    return Mono.from(c.beginTransaction())
        .thenMany(Flux.<Object>from(LoadLoops.SELECT_ONE.apply(c)))
        .concatWith(Mono.from(c.commitTransaction()).then(Mono.empty()));
  }
}
