package io.lagoon.micrometer;

import io.lagoon.ConnectionPool;
import io.lagoon.PoolListener;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Tag;
import io.micrometer.core.instrument.Tags;
import java.util.Objects;
import reactor.core.Disposable;

/**
 * Micrometer meters for a Lagoon pool: gauges of its state, timers of acquire wait, usage and
 * connection creation, counters of evictions, connect failures and possible leaks.
 *
 * <pre>{@code
 * ConnectionPool pool = ConnectionPool.builder(driver).poolName("shop").build();
 * Disposable meters = LagoonMetrics.monitor(pool, registry);
 *
 * // or, to time the initial fill's connects too:
 * ConnectionPool pool = ConnectionPool.builder(driver).poolName("shop")
 *     .listener(LagoonMetrics.listener(registry)).build();
 * }</pre>
 *
 * <p>By default the meters have Spring Boot's names for R2DBC pools ({@code r2dbc.pool.acquired},
 * ... tagged {@code name=<poolName>}), so dashboards made for r2dbc-pool keep working; {@link
 * Naming#OPEN_TELEMETRY} switches to OpenTelemetry's database-client connection names ({@code
 * db.client.connection.count}, ... tagged {@code pool.name=<poolName>}). The meters are removed
 * from the registry when the pool has closed every connection, or when the handle returned by
 * {@link #monitor} is disposed.
 *
 * <p>The acquire-wait and usage timers are on the hot path: one of each per acquire + release. By
 * default they are lean: a {@link io.micrometer.core.instrument.FunctionTimer} (count and total)
 * plus a time gauge {@code <name>.max} (the longest of the last 2 minutes), fed by a lock-free
 * accumulator that costs one compare-and-set per release and nothing for an idle connection lent
 * at once. When the registry's configuration asks these timers for a distribution (percentile
 * histogram, percentiles or SLO buckets, through a {@link
 * io.micrometer.core.instrument.config.MeterFilter} or Spring Boot's {@code
 * management.metrics.distribution.*} properties) and the registry publishes one (Prometheus's
 * does), they are the registry's own {@link io.micrometer.core.instrument.Timer}s with their
 * histograms instead, and {@code max} is part of them; recording then costs what two Micrometer
 * timers with histograms cost. The connect timer is always the registry's own timer.
 *
 * <p>Recording is lock-free and allocates nothing per acquire: every meter is registered once,
 * when the meters are bound. Pool names must be unique per registry.
 *
 * <p>Thread-safe.
 */
public final class LagoonMetrics {

  /** Which names and tags the meters get. */
  public enum Naming {
    /**
     * Spring Boot's names for R2DBC connection pools ({@code r2dbc.pool.*}, tag {@code name}), plus
     * timers and counters under the same prefix.
     */
    SPRING_BOOT,
    /**
     * OpenTelemetry's semantic conventions for database-client connection pools ({@code
     * db.client.connection.*}, tag {@code pool.name}); meters the conventions do not define are
     * named {@code lagoon.pool.*}.
     */
    OPEN_TELEMETRY
  }

  private LagoonMetrics() {}

  /**
   * Binds the pool's meters, with Spring Boot's names, to {@code registry} now.
   *
   * @return a handle whose {@code dispose()} removes the meters and stops recording
   */
  public static Disposable monitor(ConnectionPool pool, MeterRegistry registry) {
    return monitor(pool, registry, Naming.SPRING_BOOT, Tags.empty());
  }

  /**
   * Binds the pool's meters to {@code registry} now, named per {@code naming}, with {@code tags}
   * added to each.
   *
   * @return a handle whose {@code dispose()} removes the meters and stops recording
   */
  public static Disposable monitor(ConnectionPool pool, MeterRegistry registry, Naming naming,
      Iterable<Tag> tags) {
    Objects.requireNonNull(pool, "pool must not be null");
    return pool.addListener(listener(registry, naming, tags));
  }

  /**
   * A listener for {@link io.lagoon.ConnectionPoolBuilder#listener} that binds the meters, with
   * Spring Boot's names, when the pool is built, so that they time its very first connects.
   */
  public static PoolListener listener(MeterRegistry registry) {
    return listener(registry, Naming.SPRING_BOOT, Tags.empty());
  }

  /**
   * A listener for {@link io.lagoon.ConnectionPoolBuilder#listener} that binds the meters, named
   * per {@code naming} and with {@code tags} added to each, when the pool is built. One listener
   * serves one pool.
   */
  public static PoolListener listener(MeterRegistry registry, Naming naming, Iterable<Tag> tags) {
    Objects.requireNonNull(registry, "registry must not be null");
    Objects.requireNonNull(naming, "naming must not be null");
    Objects.requireNonNull(tags, "tags must not be null");
    return new PoolMeters(registry, naming, Tags.of(tags));
  }
}
