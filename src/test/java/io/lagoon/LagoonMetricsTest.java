package io.lagoon;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.lagoon.micrometer.LagoonMetrics;
import io.lagoon.micrometer.LagoonMetrics.Naming;
import io.micrometer.core.instrument.FunctionTimer;
import io.micrometer.core.instrument.Meter;
import io.micrometer.core.instrument.Tags;
import io.micrometer.core.instrument.Timer;
import io.micrometer.core.instrument.config.MeterFilter;
import io.micrometer.core.instrument.cumulative.CumulativeTimer;
import io.micrometer.core.instrument.distribution.CountAtBucket;
import io.micrometer.core.instrument.distribution.DistributionStatisticConfig;
import io.micrometer.core.instrument.distribution.pause.PauseDetector;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import io.r2dbc.spi.R2dbcNonTransientResourceException;
import java.time.Duration;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import reactor.core.Disposable;
import reactor.core.publisher.Flux;
import reactor.test.StepVerifier;

/** Micrometer meters over the fake driver, in virtual time. */
class LagoonMetricsTest extends PoolFixture {

  private final SimpleMeterRegistry registry = new HistogramRegistry();
  /** Meters whose configuration asks for a percentile histogram. */
  private final Set<String> histograms = ConcurrentHashMap.newKeySet();

  LagoonMetricsTest() {
    super("shop");
    registry.config().meterFilter(new MeterFilter() {
      @Override
      public DistributionStatisticConfig configure(Meter.Id id, DistributionStatisticConfig c) {
        if (Boolean.TRUE.equals(c.isPercentileHistogram())) {
          histograms.add(id.getName());
        }
        return c;
      }
    });
  }

  /**
   * A simple registry whose timers publish percentile-histogram buckets when asked to, as
   * Prometheus's do (SimpleMeterRegistry's own publish SLO buckets only).
   */
  private static final class HistogramRegistry extends SimpleMeterRegistry {
    @Override
    protected Timer newTimer(Meter.Id id, DistributionStatisticConfig config,
        PauseDetector pauseDetector) {
      return new CumulativeTimer(id, clock, config, pauseDetector, getBaseTimeUnit(), true);
    }
  }

  private double gauge(String name) {
    return registry.get(name).tag("name", "shop").gauge().value();
  }

  private Timer timer(String name, String outcome) {
    return registry.get(name).tag("name", "shop").tag("outcome", outcome).timer();
  }

  /** The lean form of the acquire timer: count and total, and its max gauge. */
  private FunctionTimer acquireTimer(String outcome) {
    return registry.get("r2dbc.pool.acquire").tag("name", "shop").tag("outcome", outcome)
        .functionTimer();
  }

  private double acquireMaxMillis(String outcome) {
    return registry.get("r2dbc.pool.acquire.max").tag("name", "shop").tag("outcome", outcome)
        .timeGauge().value(TimeUnit.MILLISECONDS);
  }

  /** Asks every r2dbc.pool.* timer for a percentile histogram, as Spring Boot's property does. */
  private void configurePercentileHistograms() {
    registry.config().meterFilter(new MeterFilter() {
      @Override
      public DistributionStatisticConfig configure(Meter.Id id, DistributionStatisticConfig c) {
        return id.getName().startsWith("r2dbc.pool.")
            ? DistributionStatisticConfig.builder().percentilesHistogram(true).build().merge(c)
            : c;
      }
    });
  }

  /**
   * Holder lent at once (a wait of 0), then lent 2 s, while a waiter waits those 2 s and keeps
   * the connection 5 s, during which a late acquire times out after its 5 s.
   */
  private void acquireWaitAndUsageScenario() {
    ConnectionPool pool = pool(b -> b.maxSize(1).initialSize(1)
        .maxAcquireTime(Duration.ofSeconds(5)));
    LagoonMetrics.monitor(pool, registry);
    Borrower holder = Borrower.borrow(pool.create()); // at once: a wait of 0
    Borrower waiter = Borrower.borrow(pool.create());
    time.advanceTimeBy(Duration.ofSeconds(2));
    holder.release(); // lent for 2 s; the waiter waited 2 s
    Borrower late = Borrower.borrow(pool.create());
    time.advanceTimeBy(Duration.ofSeconds(5)); // the waiter keeps it: the late one times out
    assertThat(late.error()).isInstanceOf(PoolAcquireTimeoutException.class);
    waiter.release(); // lent for 5 s
  }

  @Test
  void gaugesHaveSpringBootsNamesAndFollowThePool() {
    ConnectionPool pool = pool(b -> b.maxSize(3).initialSize(2).maxPendingAcquires(50));
    LagoonMetrics.monitor(pool, registry);
    assertThat(gauge("r2dbc.pool.allocated")).isEqualTo(2);
    assertThat(gauge("r2dbc.pool.idle")).isEqualTo(2);
    assertThat(gauge("r2dbc.pool.acquired")).isZero();
    assertThat(gauge("r2dbc.pool.max.allocated")).isEqualTo(3);
    assertThat(gauge("r2dbc.pool.max.pending")).isEqualTo(50);

    driver.connectLatency(Duration.ofSeconds(1));
    Borrower a = Borrower.borrow(pool.create());
    Borrower b = Borrower.borrow(pool.create());
    Borrower c = Borrower.borrow(pool.create()); // waits for the third connect
    assertThat(gauge("r2dbc.pool.acquired")).isEqualTo(2);
    assertThat(gauge("r2dbc.pool.idle")).isZero();
    assertThat(gauge("r2dbc.pool.pending")).isEqualTo(1);
    assertThat(gauge("r2dbc.pool.allocated")).isEqualTo(3);
    time.advanceTimeBy(Duration.ofSeconds(1));
    assertThat(gauge("r2dbc.pool.acquired")).isEqualTo(3);
    assertThat(gauge("r2dbc.pool.pending")).isZero();
    a.release();
    b.release();
    c.release();
    assertThat(gauge("r2dbc.pool.acquired")).isZero();
    assertThat(gauge("r2dbc.pool.idle")).isEqualTo(3);
  }

  @Test
  void timersRecordAcquireWaitByOutcomeAndUsage() {
    acquireWaitAndUsageScenario();

    FunctionTimer success = acquireTimer("success");
    assertThat(success.count()).isEqualTo(2);
    assertThat(success.totalTime(TimeUnit.MILLISECONDS)).isEqualTo(2000);
    assertThat(acquireMaxMillis("success")).isEqualTo(2000);
    FunctionTimer timeout = acquireTimer("timeout");
    assertThat(timeout.count()).isEqualTo(1);
    assertThat(timeout.totalTime(TimeUnit.SECONDS)).isEqualTo(5);
    assertThat(acquireMaxMillis("timeout")).isEqualTo(5000);
    for (String outcome : List.of("rejected", "cancelled", "failed")) {
      assertThat(acquireTimer(outcome).count()).as(outcome).isZero();
      assertThat(acquireMaxMillis(outcome)).as(outcome).isZero();
    }

    FunctionTimer usage = registry.get("r2dbc.pool.usage").tag("name", "shop").functionTimer();
    assertThat(usage.count()).isEqualTo(2);
    assertThat(usage.totalTime(TimeUnit.SECONDS)).isEqualTo(7);
    assertThat(registry.get("r2dbc.pool.usage.max").tag("name", "shop").timeGauge()
        .value(TimeUnit.SECONDS)).isEqualTo(5);
    assertThat(histograms).as("timers made to publish a histogram whatever the registry says")
        .isEmpty();
    assertThat(registry.find("r2dbc.pool.acquire").timers()).isEmpty();
  }

  @Test
  void successfulAcquiresCountFromWhenTheMetersWereBound() {
    ConnectionPool pool = pool(b -> b.maxSize(2).initialSize(2));
    Borrower before = Borrower.borrow(pool.create());
    before.release();
    LagoonMetrics.monitor(pool, registry);
    for (int i = 0; i < 3; i++) {
      Borrower b = Borrower.borrow(pool.create());
      b.release();
    }
    assertThat(acquireTimer("success").count()).isEqualTo(3);
    assertThat(acquireTimer("success").totalTime(TimeUnit.NANOSECONDS)).isZero();
    assertThat(registry.get("r2dbc.pool.usage").tag("name", "shop").functionTimer().count())
        .isEqualTo(3);
  }

  @Test
  void whenTheRegistryAsksForPercentileHistogramsTheTimersAreTheRegistrysOwn() {
    configurePercentileHistograms();
    acquireWaitAndUsageScenario();

    Timer success = timer("r2dbc.pool.acquire", "success");
    assertThat(success.count()).isEqualTo(2);
    assertThat(success.totalTime(TimeUnit.MILLISECONDS)).isEqualTo(2000);
    assertThat(success.max(TimeUnit.MILLISECONDS)).isEqualTo(2000);
    assertThat(countAtMost(success, 0.001)).as("the wait of 0").isEqualTo(1);
    assertThat(countAtMost(success, 1.5)).isEqualTo(1);
    assertThat(countAtMost(success, 2.5)).as("bucket 2.147 s").isEqualTo(2);
    Timer timeout = timer("r2dbc.pool.acquire", "timeout");
    assertThat(timeout.count()).isEqualTo(1);
    assertThat(timeout.totalTime(TimeUnit.SECONDS)).isEqualTo(5);
    assertThat(timer("r2dbc.pool.acquire", "rejected").count()).isZero();

    Timer usage = registry.get("r2dbc.pool.usage").tag("name", "shop").timer();
    assertThat(usage.count()).isEqualTo(2);
    assertThat(usage.totalTime(TimeUnit.SECONDS)).isEqualTo(7);
    assertThat(usage.max(TimeUnit.SECONDS)).isEqualTo(5);
    assertThat(countAtMost(usage, 1.5)).isZero();
    assertThat(countAtMost(usage, 2.5)).isEqualTo(1);
    assertThat(countAtMost(usage, 4.5)).isEqualTo(1);
    assertThat(countAtMost(usage, 10)).isEqualTo(2);
    assertThat(timer("r2dbc.pool.creation", "success").takeSnapshot().histogramCounts())
        .isNotEmpty();
    assertThat(registry.find("r2dbc.pool.acquire").functionTimers()).isEmpty();
    assertThat(registry.find("r2dbc.pool.acquire.max").meters()).isEmpty();
  }

  /**
   * How many of the timer's durations its histogram puts at or under {@code seconds}: the
   * (cumulative, as in Prometheus) count of the largest bucket boundary not above it.
   */
  private static double countAtMost(Timer timer, double seconds) {
    CountAtBucket[] buckets = timer.takeSnapshot().histogramCounts();
    assertThat(buckets).as("histogram buckets of " + timer.getId()).isNotEmpty();
    double atMost = 0;
    for (CountAtBucket b : buckets) {
      if (b.bucket(TimeUnit.SECONDS) <= seconds) {
        atMost = b.count();
      }
    }
    return atMost;
  }

  @Test
  void aRegistryThatWouldPublishNoBucketsKeepsTheLeanTimers() {
    SimpleMeterRegistry plain = new SimpleMeterRegistry(); // no aggregable percentiles
    plain.config().meterFilter(new MeterFilter() {
      @Override
      public DistributionStatisticConfig configure(Meter.Id id, DistributionStatisticConfig c) {
        return DistributionStatisticConfig.builder().percentilesHistogram(true).build().merge(c);
      }
    });
    ConnectionPool pool = pool(b -> b.maxSize(1).initialSize(1));
    LagoonMetrics.monitor(pool, plain);
    Borrower.borrow(pool.create()).release();
    assertThat(plain.get("r2dbc.pool.usage").tag("name", "shop").functionTimer().count())
        .isEqualTo(1);
    assertThat(plain.find("r2dbc.pool.acquire").timers()).isEmpty();
  }

  @Test
  void percentilesConfiguredForOneTimerMakeOnlyThatOneTheRegistrysOwn() {
    registry.config().meterFilter(new MeterFilter() {
      @Override
      public DistributionStatisticConfig configure(Meter.Id id, DistributionStatisticConfig c) {
        return id.getName().equals("r2dbc.pool.usage")
            ? DistributionStatisticConfig.builder().percentiles(0.99).build().merge(c) : c;
      }
    });
    acquireWaitAndUsageScenario();
    Timer usage = registry.get("r2dbc.pool.usage").tag("name", "shop").timer();
    assertThat(usage.count()).isEqualTo(2);
    assertThat(usage.takeSnapshot().percentileValues()).hasSize(1);
    assertThat(acquireTimer("success").count()).isEqualTo(2);
  }

  @Test
  void aBuilderListenerTimesTheInitialFillAndConnectFailuresAreCounted() {
    driver.connectLatency(Duration.ofMillis(80));
    ConnectionPool pool = pool(b -> b.maxSize(4).initialSize(2).acquireRetry(3)
        .listener(LagoonMetrics.listener(registry)));
    time.advanceTimeBy(Duration.ofMillis(80));
    Timer created = timer("r2dbc.pool.creation", "success");
    assertThat(created.count()).isEqualTo(2);
    assertThat(created.max(TimeUnit.MILLISECONDS)).isEqualTo(80);

    driver.failNextConnects(2);
    Borrower a = Borrower.borrow(pool.create());
    Borrower b = Borrower.borrow(pool.create());
    Borrower c = Borrower.borrow(pool.create()); // needs a new connection: two fail first
    time.advanceTimeBy(Duration.ofSeconds(2));
    assertThat(c.got()).isTrue();
    assertThat(timer("r2dbc.pool.creation", "failure").count()).isEqualTo(2);
    assertThat(registry.get("r2dbc.pool.connect.failures").tag("name", "shop").counter().count())
        .isEqualTo(2);
    assertThat(created.count()).isEqualTo(3);
    a.release();
    b.release();
    c.release();
  }

  @Test
  void evictionsAreCountedByReason() {
    ConnectionPool pool = pool(b -> b.maxSize(3).initialSize(3).maxConcurrentCreates(3)
        .maxIdleTime(Duration.ofMinutes(5)).keepaliveInterval(Duration.ZERO)
        .backgroundEvictionInterval(Duration.ofMinutes(1)));
    LagoonMetrics.monitor(pool, registry);
    Borrower broken = Borrower.borrow(pool.create());
    broken.physical().failNextStatement(new R2dbcNonTransientResourceException("gone"));
    StepVerifier.create(Flux.from(broken.connection().createStatement("SELECT 1").execute()))
        .expectError().verify();
    broken.release();
    time.advanceTimeBy(Duration.ofMinutes(5));
    assertThat(evictions("broken")).isEqualTo(1);
    assertThat(evictions("idle")).isEqualTo(2);
    assertThat(evictions("lifetime") + evictions("validation") + evictions("soft")
        + evictions("abandoned") + evictions("closed")).isZero();
  }

  @Test
  void possibleLeaksAreCountedOncePerLend() {
    ConnectionPool pool = pool(b -> b.maxSize(2).leakDetectionThreshold(Duration.ofSeconds(10)));
    LagoonMetrics.monitor(pool, registry);
    Borrower kept = Borrower.borrow(pool.create());
    Borrower quick = Borrower.borrow(pool.create());
    quick.release();
    assertThat(registry.get("r2dbc.pool.leaks").tag("name", "shop").counter().count()).isZero();
    time.advanceTimeBy(Duration.ofMinutes(1));
    assertThat(registry.get("r2dbc.pool.leaks").tag("name", "shop").counter().count())
        .as("one lend past the threshold, counted once however long it lasts").isEqualTo(1);
    kept.release();
    assertThat(pool.stats().leaks()).isEqualTo(1);
  }

  private double evictions(String reason) {
    return registry.get("r2dbc.pool.evictions").tag("name", "shop").tag("reason", reason).counter()
        .count();
  }

  @Test
  void theOldestWaitersAgeIgnoresWaitersThatLeft() {
    ConnectionPool pool = pool(b -> b.maxSize(1).initialSize(1)
        .maxAcquireTime(Duration.ofMinutes(1)));
    LagoonMetrics.monitor(pool, registry);
    Borrower holder = Borrower.borrow(pool.create());
    assertThat(oldest()).isZero();
    Borrower first = Borrower.borrow(pool.create());
    time.advanceTimeBy(Duration.ofSeconds(3));
    Borrower second = Borrower.borrow(pool.create());
    time.advanceTimeBy(Duration.ofSeconds(1));
    assertThat(oldest()).isEqualTo(4);
    first.cancel(); // its node stays in the queue until someone skips it
    assertThat(oldest()).isEqualTo(1);
    holder.release();
    assertThat(second.got()).isTrue();
    assertThat(oldest()).isZero();
    second.release();
  }

  private double oldest() {
    return registry.get("r2dbc.pool.pending.oldest").tag("name", "shop").timeGauge()
        .value(TimeUnit.SECONDS);
  }

  @Test
  void metersAreRemovedWhenThePoolHasClosedOrTheHandleIsDisposed() {
    ConnectionPool pool = pool(b -> b.maxSize(2).initialSize(1));
    Disposable meters = LagoonMetrics.monitor(pool, registry, Naming.SPRING_BOOT,
        Tags.of("app", "shop-api"));
    assertThat(registry.get("r2dbc.pool.acquired").tags("name", "shop", "app", "shop-api")
        .gauge().value()).isZero();
    assertThat(registry.getMeters()).isNotEmpty();
    meters.dispose();
    assertThat(registry.getMeters()).isEmpty();

    LagoonMetrics.monitor(pool, registry);
    Borrower lent = Borrower.borrow(pool.create());
    StepVerifier.create(pool.closeGracefully(Duration.ofSeconds(2)))
        .then(() -> assertThat(registry.getMeters()).as("a connection is still lent").isNotEmpty())
        .then(lent::release)
        .verifyComplete();
    assertThat(registry.getMeters()).isEmpty();
  }

  @Test
  void openTelemetryNamingUsesTheSemanticConventionNames() {
    ConnectionPool pool = pool(b -> b.maxSize(2).initialSize(2).maxConcurrentCreates(2)
        .maxAcquireTime(Duration.ofSeconds(1)));
    LagoonMetrics.monitor(pool, registry, Naming.OPEN_TELEMETRY, Tags.empty());
    Borrower a = Borrower.borrow(pool.create());
    Borrower b = Borrower.borrow(pool.create());
    Borrower c = Borrower.borrow(pool.create());
    assertThat(otelGauge("db.client.connection.count", "state", "used")).isEqualTo(2);
    assertThat(otelGauge("db.client.connection.count", "state", "idle")).isZero();
    assertThat(registry.get("db.client.connection.max").tag("pool.name", "shop").gauge().value())
        .isEqualTo(2);
    assertThat(registry.get("db.client.connection.pending_requests").tag("pool.name", "shop")
        .gauge().value()).isEqualTo(1);
    time.advanceTimeBy(Duration.ofSeconds(1));
    assertThat(c.error()).isInstanceOf(PoolAcquireTimeoutException.class);
    assertThat(registry.get("db.client.connection.timeouts").tag("pool.name", "shop").counter()
        .count()).isEqualTo(1);
    a.release();
    b.release();
    assertThat(registry.get("db.client.connection.wait_time").tag("pool.name", "shop")
        .tag("outcome", "success").functionTimer().count()).isEqualTo(2);
    assertThat(registry.get("db.client.connection.wait_time").tag("pool.name", "shop")
        .tag("outcome", "timeout").functionTimer().totalTime(TimeUnit.SECONDS)).isEqualTo(1);
    assertThat(registry.get("db.client.connection.use_time").tag("pool.name", "shop")
        .functionTimer().totalTime(TimeUnit.SECONDS)).isEqualTo(2);
    assertThat(registry.get("db.client.connection.use_time.max").tag("pool.name", "shop")
        .timeGauge().value(TimeUnit.SECONDS)).isEqualTo(1);
    assertThat(registry.get("db.client.connection.create_time").tag("pool.name", "shop")
        .tag("outcome", "success").timer().count()).isZero(); // opened before monitor()
    assertThat(registry.get("lagoon.pool.leaks").tag("pool.name", "shop").counter().count())
        .isZero();
    List<String> names = registry.getMeters().stream().map(m -> m.getId().getName()).distinct()
        .toList();
    assertThat(names).noneMatch(n -> n.startsWith("r2dbc."));
    assertThat(registry.getMeters()).allMatch(m -> "shop".equals(m.getId().getTag("pool.name")));
  }

  private double otelGauge(String name, String tag, String value) {
    return registry.get(name).tag("pool.name", "shop").tag(tag, value).gauge().value();
  }

  @Test
  void oneListenerServesOnePool() {
    ConnectionPool first = pool(b -> b.maxSize(1));
    var listener = LagoonMetrics.listener(registry);
    first.addListener(listener);
    ConnectionPool second = pool(b -> b.maxSize(1));
    assertThatThrownBy(() -> second.addListener(listener))
        .isInstanceOf(IllegalStateException.class)
        .hasMessageContaining("already serves pool 'shop'");
    List<Meter> meters = registry.getMeters();
    assertThat(meters).isNotEmpty();
  }
}
