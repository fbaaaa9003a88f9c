package io.lagoon.micrometer;

import io.lagoon.ConnectionPool;
import io.lagoon.PoolListener;
import io.lagoon.internal.PoolAccess;
import io.lagoon.internal.PoolCore;
import io.lagoon.micrometer.LagoonMetrics.Naming;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.Meter;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Tags;
import io.micrometer.core.instrument.TimeGauge;
import io.micrometer.core.instrument.Timer;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.TimeUnit;
import java.util.function.ToDoubleFunction;
import org.jspecify.annotations.Nullable;

/**
 * The meters of one pool, bound when the listener is attached and removed when it is detached.
 * Every timer and counter is registered up front, one per tag value, so recording an event is an
 * array read and the meter's own lock-free update.
 */
final class PoolMeters implements PoolListener {

  /** The names of one naming scheme; null where the scheme has no such meter. */
  private record Names(String tag, @Nullable String connections, @Nullable String acquired,
      @Nullable String allocated, @Nullable String idle, String pending, String maxAllocated,
      String maxPending, String oldestPending, String acquire, String usage, String creation,
      String evictions, String connectFailures, @Nullable String timeouts, String leaks) {}

  private static final Names SPRING_BOOT = new Names("name", null, "r2dbc.pool.acquired",
      "r2dbc.pool.allocated", "r2dbc.pool.idle", "r2dbc.pool.pending", "r2dbc.pool.max.allocated",
      "r2dbc.pool.max.pending", "r2dbc.pool.pending.oldest", "r2dbc.pool.acquire",
      "r2dbc.pool.usage", "r2dbc.pool.creation", "r2dbc.pool.evictions",
      "r2dbc.pool.connect.failures", null, "r2dbc.pool.leaks");

  /**
   * OpenTelemetry: lent and idle connections are one meter with a {@code state} tag; what the
   * conventions do not define is named {@code lagoon.pool.*}.
   */
  private static final Names OPEN_TELEMETRY = new Names("pool.name",
      "db.client.connection.count", null, null, null, "db.client.connection.pending_requests",
      "db.client.connection.max", "lagoon.pool.pending_requests.max",
      "lagoon.pool.pending_requests.oldest", "db.client.connection.wait_time",
      "db.client.connection.use_time", "db.client.connection.create_time",
      "lagoon.pool.evictions", "lagoon.pool.connect_failures", "db.client.connection.timeouts",
      "lagoon.pool.leaks");

  private final MeterRegistry registry;
  private final Naming naming;
  private final Tags extraTags;
  private final List<Meter> meters = new ArrayList<>();
  private volatile @Nullable ConnectionPool pool;
  private final Timer[] acquire = new Timer[AcquireOutcome.values().length];
  private final Counter[] evictions = new Counter[EvictionReason.values().length];
  private @Nullable Timer usage;
  private @Nullable Timer created;
  private @Nullable Timer createFailed;
  private @Nullable Counter connectFailures;
  private @Nullable Counter timeouts;
  private @Nullable Counter leaks;

  PoolMeters(MeterRegistry registry, Naming naming, Tags extraTags) {
    this.registry = registry;
    this.naming = naming;
    this.extraTags = extraTags;
  }

  /**
   * Registers every meter. Throws if this listener already serves a pool: the pool then does not
   * attach it, so two pools never record into one pool's meters.
   */
  @Override
  public synchronized void onAttach(ConnectionPool attached) {
    if (pool != null) {
      throw new IllegalStateException("this LagoonMetrics listener already serves pool '"
          + pool.name() + "'; create one per pool");
    }
    Names n = naming == Naming.SPRING_BOOT ? SPRING_BOOT : OPEN_TELEMETRY;
    Tags tags = extraTags.and(n.tag(), attached.name());
    PoolCore core = PoolAccess.core(attached);

    gauge(n.connections(), "Open connections, by state: idle or used (lent)",
        tags.and("state", "idle"), attached, p -> p.stats().idle());
    gauge(n.connections(), "Open connections, by state: idle or used (lent)",
        tags.and("state", "used"), attached, p -> p.stats().acquired());
    gauge(n.acquired(), "Connections lent to subscribers", tags, attached,
        p -> p.stats().acquired());
    gauge(n.allocated(), "Connections open, opening or closing", tags, attached,
        p -> p.stats().allocated());
    gauge(n.idle(), "Idle connections", tags, attached, p -> p.stats().idle());
    gauge(n.pending(), "Subscribers waiting for a connection", tags, attached,
        p -> p.stats().pending());
    gauge(n.maxAllocated(), "The most connections the pool may hold (maxSize)", tags, attached,
        p -> p.stats().maxSize());
    gauge(n.maxPending(), "The most subscribers that may wait (maxPendingAcquires)", tags,
        attached, p -> core.maxPendingAcquires());
    meters.add(TimeGauge.builder(n.oldestPending(), core, TimeUnit.NANOSECONDS,
            PoolCore::oldestWaitNanos)
        .description("How long the oldest waiting subscriber has waited")
        .tags(tags).strongReference(true).register(registry));

    for (AcquireOutcome outcome : AcquireOutcome.values()) {
      acquire[outcome.ordinal()] = timer(n.acquire(),
          "Time a subscriber waited for a connection, by outcome",
          tags.and("outcome", outcome.name().toLowerCase(Locale.ROOT)));
    }
    usage = timer(n.usage(), "Time a connection was lent", tags);
    created = timer(n.creation(), "Time to open a connection, by outcome",
        tags.and("outcome", "success"));
    createFailed = timer(n.creation(), "Time to open a connection, by outcome",
        tags.and("outcome", "failure"));
    for (EvictionReason reason : EvictionReason.values()) {
      evictions[reason.ordinal()] = counter(n.evictions(), "Connections the pool closed, by reason",
          tags.and("reason", reason.name().toLowerCase(Locale.ROOT)));
    }
    connectFailures = counter(n.connectFailures(), "Failed attempts to open a connection", tags);
    leaks = counter(n.leaks(), "Connections lent longer than leakDetectionThreshold (possible"
        + " leaks)", tags);
    String timeoutsName = n.timeouts();
    if (timeoutsName != null) {
      timeouts = counter(timeoutsName, "Acquires that timed out", tags);
    }
    pool = attached;
  }

  private void gauge(@Nullable String name, String description, Tags tags, ConnectionPool p,
      ToDoubleFunction<ConnectionPool> value) {
    if (name == null) {
      return;
    }
    meters.add(Gauge.builder(name, p, value).description(description).tags(tags)
        .strongReference(true).register(registry));
  }

  private Timer timer(String name, String description, Tags tags) {
    Timer t = Timer.builder(name).description(description).tags(tags)
        .publishPercentileHistogram().register(registry);
    meters.add(t);
    return t;
  }

  private Counter counter(String name, String description, Tags tags) {
    Counter c = Counter.builder(name).description(description).tags(tags).register(registry);
    meters.add(c);
    return c;
  }

  @Override
  public void onAcquire(AcquireOutcome outcome, long waitNanos) {
    Timer t = acquire[outcome.ordinal()];
    if (t != null) {
      t.record(waitNanos, TimeUnit.NANOSECONDS);
    }
    Counter c = timeouts;
    if (c != null && outcome == AcquireOutcome.TIMEOUT) {
      c.increment();
    }
  }

  @Override
  public void onReturn(long usageNanos) {
    Timer t = usage;
    if (t != null) {
      t.record(usageNanos, TimeUnit.NANOSECONDS);
    }
  }

  @Override
  public void onCreate(boolean success, long nanos) {
    Timer t = success ? created : createFailed;
    if (t != null) {
      t.record(nanos, TimeUnit.NANOSECONDS);
    }
  }

  @Override
  public void onConnectFailure(Throwable error) {
    Counter c = connectFailures;
    if (c != null) {
      c.increment();
    }
  }

  @Override
  public void onLeak(long lentNanos) {
    Counter c = leaks;
    if (c != null) {
      c.increment();
    }
  }

  @Override
  public void onEvict(EvictionReason reason) {
    Counter c = evictions[reason.ordinal()];
    if (c != null) {
      c.increment();
    }
  }

  /** Removes every meter this listener registered. */
  @Override
  public synchronized void onDetach() {
    for (Meter m : meters) {
      registry.remove(m);
    }
    meters.clear();
  }

  @Override
  public String toString() {
    ConnectionPool p = pool;
    return "LagoonMetrics[" + naming + (p != null ? ", pool " + p.name() : "") + "]";
  }
}
