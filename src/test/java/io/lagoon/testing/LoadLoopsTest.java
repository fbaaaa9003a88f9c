package io.lagoon.testing;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.lagoon.ConnectionPool;
import io.r2dbc.spi.R2dbcTimeoutException;
import java.time.Duration;
import java.util.Map;
import java.util.function.BooleanSupplier;
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
    await(() -> loops.ops() >= 5_000, "5,000 operations");
    loops.stop(Duration.ofSeconds(10));

    assertThat(loops.failures()).isZero();
    assertThat(loops.holding()).isZero();
    assertThat(loops.active()).isZero();
    assertThat(pool.stats().acquired()).isZero();
    assertThat(loops.opsPerSecond().stream().mapToLong(Long::longValue).sum())
        .isEqualTo(loops.ops());
    assertThat(loops.opsBetween(0, LoadLoops.MAX_SECONDS)).isEqualTo(loops.ops());
    assertThat(loops.percentileMicros(0.99)).isGreaterThanOrEqualTo(loops.percentileMicros(0.5))
        .isGreaterThanOrEqualTo(0);
    assertThat(driver.opened()).isLessThanOrEqualTo(4);
  }

  @Test
  void holdingCountsOperationsWithAConnectionAndActiveAlsoThoseThatWait() {
    loops = LoadLoops.builder(pool(2)).loops(3)
        .work(c -> Mono.delay(Duration.ofMillis(300)))
        .start();
    await(() -> loops.holding() == 2 && loops.active() == 3, "2 holding, 1 waiting");
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
    await(() -> loops.paused() > 0, "a loop pauses after its failure");
    await(() -> loops.failures() >= 6, "6 failures");
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
  void badSettingsAreRefusedWithTheirName() {
    LoadLoops.Builder b = LoadLoops.builder(pool(1));
    assertThatThrownBy(() -> b.loops(0)).hasMessage("loops (0) must be >= 1");
    assertThatThrownBy(() -> b.pauseAfterFailure(Duration.ofMillis(-1)))
        .hasMessage("pauseAfterFailure (PT-0.001S) must not be negative");
    assertThatThrownBy(() -> b.maxLoggedFailures(-1)).hasMessage("maxLoggedFailures (-1) must be >= 0");
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

  private static void await(BooleanSupplier condition, String what) {
    Mono.fromCallable(condition::getAsBoolean)
        .filter(ok -> ok)
        .repeatWhenEmpty(r -> r.delayElements(Duration.ofMillis(5)))
        .timeout(Duration.ofSeconds(20), Mono.error(new AssertionError("timed out: " + what)))
        .block(Duration.ofSeconds(25));
  }
}
