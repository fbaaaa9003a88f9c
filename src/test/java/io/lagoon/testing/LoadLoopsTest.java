package io.lagoon.testing;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.lagoon.ConnectionPool;
import io.r2dbc.spi.R2dbcTimeoutException;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.TimeoutException;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import reactor.core.publisher.Mono;
import reactor.core.scheduler.Schedulers;

/** The reliability scenarios' load helper: what it counts, and that it stops cleanly. */
class LoadLoopsTest {

  private final FakeConnectionFactory driver = new FakeConnectionFactory();
  private ConnectionPool pool;
  private LoadLoops loops;

  @AfterEach
  void cleanUp() {
    if (loops != null) {
      loops.stopping().subscribe();
    }
    if (pool != null) {
      pool.dispose();
    }
  }

  private ConnectionPool pool(int maxSize) {
    pool = ConnectionPool.builder(driver).maxSize(maxSize).initialSize(0).poolName("loops").build();
    return pool;
  }

  @Test
  void loopsCountOperationsAndGiveEveryConnectionBackWhenStopped() {
    loops = LoadLoops.builder(pool(4)).loops(16).operationsOn(Schedulers.parallel()).start();
    Await.until("5,000 operations", () -> loops.ops() >= 5_000);
    loops.stop(Duration.ofSeconds(10));

    assertThat(loops.failures()).isZero();
    assertThat(loops.holding()).isZero();
    assertThat(loops.active()).isZero();
    assertThat(pool.stats().acquired()).isZero();
    assertThat(loops.opsPerSecond().stream().mapToLong(Long::longValue).sum())
        .isEqualTo(loops.ops());
    assertThat(loops.opsBetween(0, LoadLoops.MAX_SECONDS)).isEqualTo(loops.ops());
    // every success is in the 10 ms counts too: the window from the start to past the current 10 ms
    long start = loops.startNanos();
    long end = System.nanoTime() + Duration.ofMillis(20).toNanos();
    assertThat(Math.round(loops.opsPerSecondBetween(start, end) * (end - start) / 1e9))
        .isEqualTo(loops.ops());
    assertThat(loops.firstSuccessAfter(start)).isGreaterThan(start).isLessThan(end);
    assertThat(loops.failuresBetween(start, end)).isEmpty();
    assertThat(loops.percentileMicros(0.99)).isGreaterThanOrEqualTo(loops.percentileMicros(0.5))
        .isGreaterThanOrEqualTo(0);
    assertThat(driver.opened()).isLessThanOrEqualTo(4);
  }

  @Test
  void holdingCountsOperationsWithAConnectionAndActiveAlsoThoseThatWait() {
    loops = LoadLoops.builder(pool(2)).loops(3)
        .work(c -> Mono.delay(Duration.ofMillis(300)))
        .start();
    Await.until("2 holding, 1 waiting", () -> loops.holding() == 2 && loops.active() == 3);
    loops.stop(Duration.ofSeconds(10));
    assertThat(loops.holding()).isZero();
    assertThat(loops.active()).isZero();
    assertThat(loops.ops()).isPositive();
  }

  @Test
  void failuresAreCountedByCauseLoggedAndFollowedByAPause() {
    loops = LoadLoops.builder(pool(2)).loops(2)
        .work(c -> Mono.error(new R2dbcTimeoutException("slow", new IllegalStateException("x"))))
        .maxLoggedFailures(3)
        .start();
    Await.until("a loop pauses after its failure", () -> loops.paused() > 0);
    Await.until("6 failures", () -> loops.failures() >= 6);
    loops.stop(Duration.ofSeconds(10));

    Map<String, Long> byCause = loops.failuresByCause();
    assertThat(byCause).containsOnlyKeys("R2dbcTimeoutException(cause: IllegalStateException)");
    assertThat(byCause.values().iterator().next()).isEqualTo(loops.failures());
    assertThat(loops.failureLog()).hasSize(3).allSatisfy(f -> {
      assertThat(f.error()).hasMessage("slow");
      assertThat(f.took().isNegative()).isFalse();
      assertThat(f.loop()).isBetween(0, 1);
    });
    assertThat(loops.ops()).isZero();
    assertThat(pool.stats().acquired()).as("closed although the work failed").isZero();
  }

  @Test
  void aFailedAcquireIsToldFromFailedWorkAndWorkPastItsTimeoutFails() {
    ConnectionPool closed = pool(1);
    closed.close().block(Duration.ofSeconds(10));
    loops = LoadLoops.builder(closed).loops(1).start();
    Await.until("a failed acquire", () -> loops.failures() >= 1);
    loops.stop(Duration.ofSeconds(10));
    assertThat(loops.failureLog()).isNotEmpty().allSatisfy(f -> {
      assertThat(f.acquireFailed()).as("no connection was delivered").isTrue();
      assertThat(f.acquireNanos()).as("the acquire lasted the whole operation")
          .isEqualTo(f.endNanos() - f.startNanos());
    });

    loops = LoadLoops.builder(pool(1)).loops(1).work(c -> Mono.never())
        .workTimeout(Duration.ofMillis(20)).start();
    Await.until("2 timed out operations", () -> loops.failures() >= 2);
    loops.stop(Duration.ofSeconds(10));
    assertThat(loops.failureLog()).allSatisfy(f -> {
      assertThat(f.error()).isInstanceOf(TimeoutException.class);
      assertThat(f.acquireFailed()).as("the connection was delivered").isFalse();
      assertThat(f.acquireNanos()).isBetween(0L, f.endNanos() - f.startNanos());
    });
    assertThat(pool.stats().acquired()).as("closed after its work timed out").isZero();
  }

  @Test
  void badSettingsAreRefusedWithTheirName() {
    LoadLoops.Builder b = LoadLoops.builder(pool(1));
    assertThatThrownBy(() -> b.loops(0)).hasMessage("loops (0) must be >= 1");
    assertThatThrownBy(() -> b.pauseAfterFailure(Duration.ofMillis(-1)))
        .hasMessage("pauseAfterFailure (PT-0.001S) must not be negative");
    assertThatThrownBy(() -> b.maxLoggedFailures(-1)).hasMessage("maxLoggedFailures (-1) must be >= 0");
    assertThatThrownBy(() -> b.workTimeout(Duration.ZERO))
        .hasMessage("workTimeout (PT0S) must be positive");
  }

  @Test
  void histogramBucketsAreAtMostThreePercentWide() {
    for (long v = 0; v < 5_000_000; v = v < 1_000 ? v + 1 : v + v / 97) {
      int i = LoadLoops.Histogram.index(v);
      assertThat(LoadLoops.Histogram.upperBound(i)).as("upper bound of %d", v)
          .isGreaterThanOrEqualTo(v).isLessThanOrEqualTo(v + Math.max(0, v * 32 / 1_000));
      if (i > 0) {
        assertThat(LoadLoops.Histogram.upperBound(i - 1)).as("previous bucket of %d", v).isLessThan(v);
      }
    }
    LoadLoops.Histogram h = new LoadLoops.Histogram();
    for (long v = 1; v <= 100_000; v++) {
      h.record(v);
    }
    assertThat(h.count()).isEqualTo(100_000);
    assertThat(h.percentile(0.5)).isBetween(50_000L, 51_600L);
    assertThat(h.percentile(0.99)).isBetween(99_000L, 102_200L);
    assertThat(h.percentile(1.0)).isBetween(100_000L, 103_200L);
    assertThat(new LoadLoops.Histogram().percentile(0.5)).isEqualTo(-1);
  }
}
