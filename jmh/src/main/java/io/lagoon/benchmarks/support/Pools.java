package io.lagoon.benchmarks.support;

import io.micrometer.core.instrument.Meter;
import io.micrometer.core.instrument.config.MeterFilter;
import io.micrometer.core.instrument.distribution.DistributionStatisticConfig;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import io.r2dbc.pool.ConnectionPoolConfiguration;
import io.r2dbc.spi.ConnectionFactory;
import java.time.Duration;

/** Builds and warms up the two pools under comparison with the same sizes. */
public final class Pools {

  private static final Duration WARMUP_TIMEOUT = Duration.ofSeconds(30);

  private Pools() {}

  /**
   * A Lagoon pool with {@code maxSize} connections, all opened before this returns. Other options
   * keep their defaults (maxAcquireTime 30 s, armed only for acquires that have to wait).
   */
  public static io.lagoon.ConnectionPool lagoon(ConnectionFactory driver, int maxSize) {
    return lagoon(driver, maxSize, "none");
  }

  /**
   * Like {@link #lagoon(ConnectionFactory, int)}, with {@code meters}: "none"; "listener", an
   * empty {@code PoolListener} (what delivering the events costs); "prometheus", {@code
   * LagoonMetrics} bound to a Prometheus registry before the initial fill; "prometheus-histograms",
   * the same with a {@code MeterFilter} that asks the {@code r2dbc.pool.*} timers for percentile
   * histograms (as Spring Boot's {@code management.metrics.distribution.percentiles-histogram}
   * property does).
   */
  public static io.lagoon.ConnectionPool lagoon(ConnectionFactory driver, int maxSize,
      String meters) {
    io.lagoon.ConnectionPoolBuilder builder = io.lagoon.ConnectionPool.builder(driver)
        .maxSize(maxSize)
        .initialSize(maxSize)
        .poolName("bench-lagoon");
    switch (meters) {
      case "none" -> { }
      case "listener" -> builder.listener(new io.lagoon.PoolListener() { });
      case "prometheus" -> builder.listener(io.lagoon.micrometer.LagoonMetrics.listener(
          new PrometheusMeterRegistry(PrometheusConfig.DEFAULT)));
      case "prometheus-histograms" -> {
        PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
        registry.config().meterFilter(new MeterFilter() {
          @Override
          public DistributionStatisticConfig configure(Meter.Id id, DistributionStatisticConfig c) {
            return id.getName().startsWith("r2dbc.pool.")
                ? DistributionStatisticConfig.builder().percentilesHistogram(true).build().merge(c)
                : c;
          }
        });
        builder.listener(io.lagoon.micrometer.LagoonMetrics.listener(registry));
      }
      default -> throw new IllegalArgumentException("meters (" + meters
          + ") must be none, listener, prometheus or prometheus-histograms");
    }
    io.lagoon.ConnectionPool pool = builder.build();
    pool.warmup().block(WARMUP_TIMEOUT);
    int idle = pool.stats().idle();
    if (idle != maxSize) {
      throw new IllegalStateException("Lagoon warm-up left " + idle + " idle connections, expected "
          + maxSize + ": " + pool.stats());
    }
    return pool;
  }

  /**
   * An r2dbc-pool 1.0.2 pool with {@code maxSize} connections, all opened before this returns.
   * Other options keep their defaults (validation {@code LOCAL} on every acquire, one acquire
   * retry) except {@code maxAcquireTime}: null keeps the default, no timeout at all.
   */
  public static io.r2dbc.pool.ConnectionPool r2dbcPool(ConnectionFactory driver, int maxSize,
      Duration maxAcquireTime) {
    ConnectionPoolConfiguration.Builder b = ConnectionPoolConfiguration.builder(driver)
        .maxSize(maxSize)
        .initialSize(maxSize)
        .name("bench-r2dbc-pool");
    if (maxAcquireTime != null) {
      b.maxAcquireTime(maxAcquireTime);
    }
    io.r2dbc.pool.ConnectionPool pool = new io.r2dbc.pool.ConnectionPool(b.build());
    pool.warmup().block(WARMUP_TIMEOUT);
    int idle = pool.getMetrics().orElseThrow().idleSize();
    if (idle != maxSize) {
      throw new IllegalStateException("r2dbc-pool warm-up left " + idle + " idle connections,"
          + " expected " + maxSize);
    }
    return pool;
  }

  /** Parses a benchmark parameter: "none" for no timeout, else an ISO-8601 duration. */
  public static Duration parseTimeout(String value) {
    return "none".equals(value) ? null : Duration.parse(value);
  }
}
