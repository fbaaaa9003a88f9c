package io.lagoon.micrometer;

import io.lagoon.ConnectionPool;
import io.lagoon.PoolListener;
import io.lagoon.internal.PoolAccess;
import io.lagoon.internal.PoolCore;
import io.lagoon.micrometer.LagoonMetrics.Naming;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.FunctionTimer;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.Meter;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Tags;
import io.micrometer.core.instrument.TimeGauge;
import io.micrometer.core.instrument.Timer;
import io.micrometer.core.instrument.distribution.HistogramSnapshot;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.TimeUnit;
import java.util.function.ToDoubleFunction;
import java.util.function.ToLongFunction;
import org.jspecify.annotations.Nullable;

/**
 * The meters of one pool, bound when the listener is attached and removed when it is detached.
 * Every meter is registered up front, one per tag value, so recording an event is an array read
 * and a lock-free update.
 *
 * <p>The two timers on the hot path, acquire wait and usage, come in two forms. By default they
 * are lean: each acquire and return updates a {@link StripedTimer} (one compare-and-set, no clock
 * read), published as a {@link FunctionTimer} (count and total) plus a {@link TimeGauge} {@code
 * <name>.max}; a successful acquire's count is the pool's own count of lends, so an idle
 * connection lent at once, whose wait is 0, costs nothing here at all. When the registry's
 * configuration asks these timers for a distribution (a percentile histogram, percentiles or SLO
 * buckets, as Spring Boot's {@code management.metrics.distribution.*} properties do through a
 * {@code MeterFilter}), they are the registry's own {@link Timer}s instead, which record every
 * event into their histogram: that costs more per acquire, and the registry's owner asked for it.
 * The connect timer, off the hot path, is always the registry's {@link Timer}.
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
  private final StripedTimer[] leanAcquire = new StripedTimer[AcquireOutcome.values().length];
  private final Counter[] evictions = new Counter[EvictionReason.values().length];
  private @Nullable Timer usage;
  private @Nullable StripedTimer leanUsage;
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

    String acquireHelp = "Time a subscriber waited for a connection, by outcome";
    AcquireOutcome[] outcomes = AcquireOutcome.values();
    Tags[] outcomeTags = new Tags[outcomes.length];
    for (AcquireOutcome outcome : outcomes) {
      outcomeTags[outcome.ordinal()] =
          tags.and("outcome", outcome.name().toLowerCase(Locale.ROOT));
    }
    Timer[] distributed = distributionTimers(n.acquire(), acquireHelp, outcomeTags);
    if (distributed != null) {
      System.arraycopy(distributed, 0, acquire, 0, distributed.length);
    } else {
      long lentBefore = core.acquireCount();
      for (AcquireOutcome outcome : outcomes) {
        // SUCCESS: every lend is one, and the pool counts its lends anyway.
        leanAcquire[outcome.ordinal()] = lean(n.acquire(), acquireHelp,
            outcomeTags[outcome.ordinal()], outcome != AcquireOutcome.SUCCESS
                ? StripedTimer::count : t -> core.acquireCount() - lentBefore);
      }
    }
    String usageHelp = "Time a connection was lent";
    distributed = distributionTimers(n.usage(), usageHelp, tags);
    if (distributed != null) {
      usage = distributed[0];
    } else {
      leanUsage = lean(n.usage(), usageHelp, tags, StripedTimer::count);
    }
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

  /** A timer as the registry's configuration makes it (with a histogram if that asks for one). */
  private Timer timer(String name, String description, Tags tags) {
    Timer t = Timer.builder(name).description(description).tags(tags).register(registry);
    meters.add(t);
    return t;
  }

  /**
   * Registers the registry's timers {@code name}, one per tag set, and keeps them if its
   * configuration gives any of them a distribution to publish (histogram buckets or
   * percentiles). Otherwise removes them again and returns null: the lean form takes the name.
   */
  private Timer @Nullable [] distributionTimers(String name, String description, Tags... tagSets) {
    Timer[] timers = new Timer[tagSets.length];
    boolean distribution = false;
    for (int i = 0; i < tagSets.length; i++) {
      timers[i] = timer(name, description, tagSets[i]);
      HistogramSnapshot s = timers[i].takeSnapshot();
      distribution |= s.histogramCounts().length > 0 || s.percentileValues().length > 0;
    }
    if (distribution) {
      return timers;
    }
    for (Timer t : timers) {
      registry.remove(t);
      meters.remove(t);
    }
    return null;
  }

  /**
   * The lean form of a timer: a {@link StripedTimer} published as a {@link FunctionTimer} named
   * {@code name} (count, total) and a {@link TimeGauge} {@code name.max}.
   */
  private StripedTimer lean(String name, String description, Tags tags,
      ToLongFunction<StripedTimer> count) {
    StripedTimer t = new StripedTimer(registry.config().clock()::monotonicTime);
    // The FunctionTimer holds t weakly; this listener holds it while it is attached.
    meters.add(FunctionTimer.builder(name, t, count, StripedTimer::totalNanos,
        TimeUnit.NANOSECONDS).description(description).tags(tags).register(registry));
    meters.add(TimeGauge.builder(name + ".max", t, TimeUnit.NANOSECONDS, StripedTimer::maxNanos)
        .description(description + ": the longest in the last 2 minutes").tags(tags)
        .strongReference(true).register(registry));
    return t;
  }

  private Counter counter(String name, String description, Tags tags) {
    Counter c = Counter.builder(name).description(description).tags(tags).register(registry);
    meters.add(c);
    return c;
  }

  @Override
  public void onAcquire(AcquireOutcome outcome, long waitNanos) {
    StripedTimer lean = leanAcquire[outcome.ordinal()];
    if (lean != null) {
      // The pool counts successful acquires itself: one lent at once (a wait of 0) adds nothing
      // to the total or the maximum, so there is nothing left to record for it.
      if (waitNanos != 0 || outcome != AcquireOutcome.SUCCESS) {
        lean.record(waitNanos);
      }
    } else {
      Timer t = acquire[outcome.ordinal()];
      if (t != null) {
        t.record(waitNanos, TimeUnit.NANOSECONDS);
      }
    }
    Counter c = timeouts;
    if (c != null && outcome == AcquireOutcome.TIMEOUT) {
      c.increment();
    }
  }

  @Override
  public void onReturn(long usageNanos) {
    StripedTimer lean = leanUsage;
    if (lean != null) {
      lean.record(usageNanos);
    } else {
      Timer t = usage;
      if (t != null) {
        t.record(usageNanos, TimeUnit.NANOSECONDS);
      }
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
