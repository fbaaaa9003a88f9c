package io.lagoon;

import io.lagoon.internal.PoolConfig;
import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactory;
import io.r2dbc.spi.ValidationDepth;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Function;
import org.jspecify.annotations.Nullable;
import org.reactivestreams.Publisher;
import reactor.core.scheduler.Scheduler;
import reactor.core.scheduler.Schedulers;

/**
 * Builds a {@link ConnectionPool}. Each method is named like the URL option that sets the same
 * value. A method checks its own value at once; {@link #build()} checks the rules that tie values
 * together. Every violation is an {@link IllegalArgumentException} whose message names the option,
 * echoes the value and states the rule; nothing is clamped silently.
 *
 * <p>Defaults adapt to the values you set, and only values you set yourself can contradict each
 * other: an unset {@code maxSize} rises to the largest {@code initialSize}, {@code minIdle} or
 * {@code maxConcurrentCreates} you set; unset {@code initialSize} and {@code maxConcurrentCreates}
 * are lowered to {@code maxSize}; an unset {@code keepaliveInterval} is lowered to half of {@code
 * maxLifeTime} or {@code maxIdleTime} when they are shorter than its default, and an unset {@code
 * maxLifeTime} rises to twice a {@code keepaliveInterval} longer than its default; an unset {@code
 * backgroundEvictionInterval} is at most half the shortest of {@code keepaliveInterval}, {@code
 * maxIdleTime}, {@code maxLifeTime} and {@code leakDetectionThreshold} (but at least {@link
 * #MIN_BACKGROUND_EVICTION_INTERVAL}).
 *
 * <p>As in r2dbc-pool, a negative {@code maxAcquireTime}, {@code maxCreateConnectionTime}, {@code
 * maxValidationTime}, {@code maxIdleTime} or {@code maxLifeTime} means no limit ({@link
 * #NO_LIMIT}); so does any duration of {@code NO_LIMIT} or longer.
 *
 * <p>Not thread-safe: configure on one thread, then call {@link #build()}, which may be called more
 * than once to build independent pools.
 */
public final class ConnectionPoolBuilder {

  /** Default for {@link #maxSize(int)}. */
  public static final int DEFAULT_MAX_SIZE = 10;
  /** Default for {@link #initialSize(int)}, lowered to {@code maxSize} when that is smaller. */
  public static final int DEFAULT_INITIAL_SIZE = 10;
  /**
   * Default for {@link #maxConcurrentCreates(int)}, lowered to {@code maxSize} when that is
   * smaller. Three parallel connects fill a pool of 10 in four connect round-trips while a restarted
   * or failing-over database sees at most three handshakes (TLS, authentication, a forked backend)
   * from this pool at once instead of {@code maxSize}.
   */
  public static final int DEFAULT_MAX_CONCURRENT_CREATES = 3;

  /**
   * What a negative timeout means: no limit, represented as 36,500 days. No timer is armed for
   * it. Any duration at least this long means no limit too.
   */
  public static final Duration NO_LIMIT = PoolConfig.NO_LIMIT;

  /**
   * The shortest {@code backgroundEvictionInterval}: 100 ms. Housekeeping scans every slot, so a
   * shorter period would keep a thread busy for nothing.
   */
  public static final Duration MIN_BACKGROUND_EVICTION_INTERVAL = Duration.ofMillis(100);

  static final Duration DEFAULT_MAX_ACQUIRE_TIME = Duration.ofSeconds(30);
  static final Duration DEFAULT_MAX_CREATE_CONNECTION_TIME = Duration.ofSeconds(10);
  static final Duration DEFAULT_MAX_CLOSE_TIME = Duration.ofSeconds(5);
  static final Duration DEFAULT_MAX_VALIDATION_TIME = Duration.ofSeconds(5);
  static final Duration DEFAULT_VALIDATION_SKIP_WINDOW = Duration.ofMillis(500);
  static final Duration DEFAULT_MAX_IDLE_TIME = Duration.ofMinutes(30);
  static final Duration DEFAULT_MAX_LIFE_TIME = Duration.ofMinutes(30);
  static final Duration DEFAULT_KEEPALIVE_INTERVAL = Duration.ofMinutes(2);
  static final Duration DEFAULT_BACKGROUND_EVICTION_INTERVAL = Duration.ofSeconds(30);

  private static final AtomicInteger POOL_COUNTER = new AtomicInteger();

  private final ConnectionFactory factory;
  private @Nullable String poolName;
  // Null: not set, the default applies (and may adapt to the values that are set).
  private @Nullable Integer maxSize;
  private @Nullable Integer initialSize;
  private @Nullable Integer minIdle;
  private int maxPendingAcquires = Integer.MAX_VALUE;
  private Duration maxAcquireTime = DEFAULT_MAX_ACQUIRE_TIME;
  private Duration maxCreateConnectionTime = DEFAULT_MAX_CREATE_CONNECTION_TIME;
  private @Nullable Integer maxConcurrentCreates;
  private Duration maxCloseTime = DEFAULT_MAX_CLOSE_TIME;
  private @Nullable Scheduler scheduler;
  private ValidationDepth validationDepth = ValidationDepth.LOCAL;
  private @Nullable String validationQuery;
  private Duration maxValidationTime = DEFAULT_MAX_VALIDATION_TIME;
  private Duration validationSkipWindow = DEFAULT_VALIDATION_SKIP_WINDOW;
  private Duration maxIdleTime = DEFAULT_MAX_IDLE_TIME;
  private @Nullable Duration maxLifeTime;
  private @Nullable Duration keepaliveInterval;
  private @Nullable Duration backgroundEvictionInterval;
  private int acquireRetry = 0;
  private @Nullable Function<? super Connection, ? extends Publisher<Void>> postAllocate;
  private @Nullable Function<? super Connection, ? extends Publisher<Void>> preRelease;
  private boolean registerJmx;
  private SessionReset sessionReset = SessionReset.AUTO;
  private Duration leakDetectionThreshold = Duration.ZERO;
  private final List<PoolListener> listeners = new ArrayList<>();

  ConnectionPoolBuilder(ConnectionFactory factory) {
    this.factory = Objects.requireNonNull(factory, "connectionFactory must not be null");
    if (factory instanceof ConnectionPool) {
      throw new IllegalArgumentException(
          "connectionFactory is already a ConnectionPool ('" + ((ConnectionPool) factory).name()
              + "'): a pool must wrap a driver's ConnectionFactory, not another pool");
    }
  }

  /**
   * The most connections open, opening or closing at once. Default 10, or the largest {@code
   * initialSize}, {@code minIdle} or {@code maxConcurrentCreates} set if that is more; at least 1.
   */
  public ConnectionPoolBuilder maxSize(int maxSize) {
    if (maxSize == -1) {
      throw new IllegalArgumentException("maxSize (-1) must be >= 1: r2dbc-pool's -1 (unbounded)"
          + " has no equivalent, a Lagoon pool is always bounded");
    }
    this.maxSize = atLeast("maxSize", maxSize, 1);
    return this;
  }

  /**
   * Connections opened in the background as soon as the pool is built, and by {@link
   * ConnectionPool#warmup()}. Default 10 (or {@code maxSize} when smaller); 0 to open none up front.
   * At most {@code maxSize} (an unset {@code maxSize} rises to it).
   */
  public ConnectionPoolBuilder initialSize(int initialSize) {
    this.initialSize = atLeast("initialSize", initialSize, 0);
    return this;
  }

  /**
   * Idle connections the pool keeps open. Default 0; at most {@code maxSize} (an unset {@code
   * maxSize} rises to it).
   */
  public ConnectionPoolBuilder minIdle(int minIdle) {
    this.minIdle = atLeast("minIdle", minIdle, 0);
    return this;
  }

  /**
   * The most subscribers that may wait for a connection at once; the next one fails at once with
   * {@link PoolExhaustedException}. Default unbounded; at least 1.
   */
  public ConnectionPoolBuilder maxPendingAcquires(int maxPendingAcquires) {
    this.maxPendingAcquires = atLeast("maxPendingAcquires", maxPendingAcquires, 1);
    return this;
  }

  /**
   * The bound on a whole acquire: waiting in the queue, opening a connection, validating it.
   * Default 30 s; negative for no limit; not zero.
   */
  public ConnectionPoolBuilder maxAcquireTime(Duration maxAcquireTime) {
    this.maxAcquireTime = positiveOrNoLimit("maxAcquireTime", maxAcquireTime);
    return this;
  }

  /**
   * The bound on opening one physical connection; a slower attempt is cancelled and counts as a
   * failed attempt. It also bounds {@code postAllocate}. Default 10 s; negative for no limit; not
   * zero.
   */
  public ConnectionPoolBuilder maxCreateConnectionTime(Duration maxCreateConnectionTime) {
    this.maxCreateConnectionTime =
        positiveOrNoLimit("maxCreateConnectionTime", maxCreateConnectionTime);
    return this;
  }

  /**
   * How many physical connections may be opening at once. Default 3 (or {@code maxSize} when
   * smaller): see {@link #DEFAULT_MAX_CONCURRENT_CREATES}. Between 1 and {@code maxSize} (an unset
   * {@code maxSize} rises to it).
   */
  public ConnectionPoolBuilder maxConcurrentCreates(int maxConcurrentCreates) {
    this.maxConcurrentCreates = atLeast("maxConcurrentCreates", maxConcurrentCreates, 1);
    return this;
  }

  /**
   * The bound on closing one physical connection. When it passes, the pool stops waiting and frees
   * the connection's slot. Default 5 s; must be positive: closing is always bounded.
   */
  public ConnectionPoolBuilder maxCloseTime(Duration maxCloseTime) {
    this.maxCloseTime = positive("maxCloseTime", maxCloseTime);
    return this;
  }

  /** The pool's name in errors, logs and meters. Default {@code lagoon-N}; must not be blank. */
  public ConnectionPoolBuilder poolName(String poolName) {
    Objects.requireNonNull(poolName, "poolName must not be null");
    if (poolName.isBlank()) {
      throw new IllegalArgumentException("poolName ('" + poolName + "') must not be blank");
    }
    this.poolName = poolName;
    return this;
  }

  /**
   * The scheduler on which timeouts and housekeeping run. Default {@link Schedulers#parallel()},
   * looked up when {@link #build()} runs (so {@code StepVerifier.withVirtualTime} can replace it).
   * The pool reads time from this scheduler when it keeps its own clock (as a virtual-time scheduler
   * does), else from {@link System#nanoTime()}.
   */
  public ConnectionPoolBuilder scheduler(Scheduler scheduler) {
    this.scheduler = Objects.requireNonNull(scheduler, "scheduler must not be null");
    return this;
  }

  /**
   * How deeply a connection is checked on borrow (after {@link #validationSkipWindow}) and by
   * keepalive, when no {@link #validationQuery} is set: {@code LOCAL} (default) asks the driver
   * whether the connection is still open; {@code REMOTE} makes a round trip to the server.
   */
  public ConnectionPoolBuilder validationDepth(ValidationDepth validationDepth) {
    this.validationDepth = Objects.requireNonNull(validationDepth, "validationDepth must not be null");
    return this;
  }

  /**
   * A query that validates a connection instead of {@code Connection.validate}; it passes when it
   * runs without error. Default none; must not be blank.
   */
  public ConnectionPoolBuilder validationQuery(String validationQuery) {
    Objects.requireNonNull(validationQuery, "validationQuery must not be null");
    if (validationQuery.isBlank()) {
      throw new IllegalArgumentException("validationQuery ('" + validationQuery + "') must not be blank");
    }
    this.validationQuery = validationQuery;
    return this;
  }

  /**
   * The bound on one validation and on the reset of a returned connection; a connection that takes
   * longer is closed and replaced. Default 5 s; negative for no limit; not zero.
   */
  public ConnectionPoolBuilder maxValidationTime(Duration maxValidationTime) {
    this.maxValidationTime = positiveOrNoLimit("maxValidationTime", maxValidationTime);
    return this;
  }

  /**
   * A connection used or validated within this window is lent without validation. Default
   * 500 ms; zero validates on every borrow.
   */
  public ConnectionPoolBuilder validationSkipWindow(Duration validationSkipWindow) {
    this.validationSkipWindow = notNegative("validationSkipWindow", validationSkipWindow);
    return this;
  }

  /**
   * Idle connections beyond {@code minIdle} are closed after this. Default 30 min; negative for no
   * limit; not zero.
   */
  public ConnectionPoolBuilder maxIdleTime(Duration maxIdleTime) {
    this.maxIdleTime = positiveOrNoLimit("maxIdleTime", maxIdleTime);
    return this;
  }

  /**
   * Connections are retired at this age minus a random jitter of up to 2.5 %, so a pool never
   * expires at once; a lent connection is retired when it comes back. A new connection always
   * serves the borrower it was opened for (or is parked once), however short this is. Default
   * 30 min, or twice a longer {@code keepaliveInterval} that is set; negative for no limit; not
   * zero.
   */
  public ConnectionPoolBuilder maxLifeTime(Duration maxLifeTime) {
    this.maxLifeTime = positiveOrNoLimit("maxLifeTime", maxLifeTime);
    return this;
  }

  /**
   * Idle connections are validated this often (minus up to 10 % jitter), so a connection that the
   * server or a firewall dropped is replaced before a borrower meets it, and traffic keeps idle
   * ones alive. Default 2 min, or half of {@code maxLifeTime} or {@code maxIdleTime} if that is
   * shorter; zero disables; otherwise less than {@code maxLifeTime}.
   */
  public ConnectionPoolBuilder keepaliveInterval(Duration keepaliveInterval) {
    Objects.requireNonNull(keepaliveInterval, "keepaliveInterval must not be null");
    if (keepaliveInterval.isNegative()) {
      throw new IllegalArgumentException("keepaliveInterval (" + keepaliveInterval
          + ") must not be negative (zero disables keepalive)");
    }
    this.keepaliveInterval = capped(keepaliveInterval);
    return this;
  }

  /**
   * How often housekeeping runs: idle and lifetime retirement, keepalive, {@code minIdle} refill,
   * leak detection. Default 30 s, or half the shortest of {@code keepaliveInterval}, {@code
   * maxIdleTime}, {@code maxLifeTime} and {@code leakDetectionThreshold} if that is less (but not
   * below {@link #MIN_BACKGROUND_EVICTION_INTERVAL}).
   * Zero or negative keeps the default (r2dbc-pool's zero disabled its background eviction; Lagoon
   * always runs housekeeping); otherwise at least {@link #MIN_BACKGROUND_EVICTION_INTERVAL}.
   */
  public ConnectionPoolBuilder backgroundEvictionInterval(Duration backgroundEvictionInterval) {
    Objects.requireNonNull(backgroundEvictionInterval,
        "backgroundEvictionInterval must not be null");
    if (backgroundEvictionInterval.isNegative() || backgroundEvictionInterval.isZero()) {
      this.backgroundEvictionInterval = null;
      return this;
    }
    if (backgroundEvictionInterval.compareTo(MIN_BACKGROUND_EVICTION_INTERVAL) < 0) {
      throw new IllegalArgumentException("backgroundEvictionInterval ("
          + backgroundEvictionInterval + ") must be at least " + MIN_BACKGROUND_EVICTION_INTERVAL
          + ", or zero or negative for the default");
    }
    this.backgroundEvictionInterval = capped(backgroundEvictionInterval);
    return this;
  }

  /**
   * How many failed connects a subscriber tolerates while the pool is down (no connection open and
   * the last connect failed) before it fails with {@link io.lagoon.PoolUnavailableException}, whose
   * cause is the connect error. Default 0: while the pool is down, acquires fail at once instead of
   * waiting for {@code maxAcquireTime}. A higher value lets subscribers wait through that many
   * failed connects (a short failover, say), keeping their place in the queue; it never extends
   * their deadline. {@code Integer.MAX_VALUE}: wait for the deadline. While some connection is
   * open, waiters wait for it and this setting does not apply. At least 0.
   */
  public ConnectionPoolBuilder acquireRetry(int acquireRetry) {
    this.acquireRetry = atLeast("acquireRetry", acquireRetry, 0);
    return this;
  }

  /**
   * Runs once on every new connection before it is first lent (for example to set session
   * options). If it fails, the connection is closed and counts as a failed connect.
   */
  public ConnectionPoolBuilder postAllocate(
      Function<? super Connection, ? extends Publisher<Void>> postAllocate) {
    this.postAllocate = Objects.requireNonNull(postAllocate, "postAllocate must not be null");
    return this;
  }

  /**
   * Runs on every connection given back, before the pool's own reset. If it fails, or it and the
   * reset together exceed {@code maxValidationTime}, the connection is closed and replaced.
   */
  public ConnectionPoolBuilder preRelease(
      Function<? super Connection, ? extends Publisher<Void>> preRelease) {
    this.preRelease = Objects.requireNonNull(preRelease, "preRelease must not be null");
    return this;
  }

  /**
   * Registers the pool's {@link io.lagoon.jmx.ConnectionPoolMXBean} as {@code
   * io.lagoon:type=ConnectionPool,name=<poolName>} until it closes. Default false.
   */
  public ConnectionPoolBuilder registerJmx(boolean registerJmx) {
    this.registerJmx = registerJmx;
    return this;
  }

  /**
   * When session state that a borrower changed through SQL is undone on release; see {@link
   * SessionReset}. Default {@link SessionReset#AUTO}.
   */
  public ConnectionPoolBuilder sessionReset(SessionReset sessionReset) {
    this.sessionReset = Objects.requireNonNull(sessionReset, "sessionReset must not be null");
    return this;
  }

  /**
   * Leak detection: a connection lent for longer than this is logged once, at WARN, as a possible
   * leak, with the pool's name, how long it has been lent and the stack of the code that borrowed
   * it (the call to {@link ConnectionPool#create()}, {@code withConnection} or {@code
   * inTransaction}); when it is given back after all, an INFO says after how long. The check runs
   * with housekeeping, so a lend is reported up to {@code backgroundEvictionInterval} after the
   * threshold (an unset interval is at most half the threshold). A connection whose handle is
   * garbage-collected without {@code close()} is logged with its borrow site too. Default zero:
   * off, and borrowing costs nothing for it; when on, each {@code create()} call records its
   * caller's stack (a few microseconds). Must not be negative.
   */
  public ConnectionPoolBuilder leakDetectionThreshold(Duration leakDetectionThreshold) {
    Objects.requireNonNull(leakDetectionThreshold, "leakDetectionThreshold must not be null");
    if (leakDetectionThreshold.isNegative()) {
      throw new IllegalArgumentException("leakDetectionThreshold (" + leakDetectionThreshold
          + ") must not be negative (zero disables leak detection)");
    }
    this.leakDetectionThreshold = capped(leakDetectionThreshold);
    return this;
  }

  /**
   * Adds a listener to the pool's events (see {@link PoolListener}), attached before the pool
   * starts its initial fill. May be called more than once; each listener is attached once per
   * pool built.
   */
  public ConnectionPoolBuilder listener(PoolListener listener) {
    listeners.add(Objects.requireNonNull(listener, "listener must not be null"));
    return this;
  }

  /**
   * Checks the configuration and builds a pool, which at once starts opening {@code initialSize}
   * connections in the background. Never blocks.
   *
   * @throws IllegalArgumentException if options contradict each other
   */
  public ConnectionPool build() {
    return new ConnectionPool(config(), List.copyOf(listeners));
  }

  /**
   * The configuration: the values set, and defaults adapted to them (see the class comment). Only
   * values that were both set explicitly can contradict each other; such a pair is refused, naming
   * both.
   */
  PoolConfig config() {
    // Sizes: an explicit value is checked against an explicit maxSize; an unset maxSize makes room.
    int size = maxSize != null ? maxSize
        : Math.max(DEFAULT_MAX_SIZE, Math.max(orZero(initialSize),
            Math.max(orZero(minIdle), orZero(maxConcurrentCreates))));
    int initial = initialSize != null ? initialSize : Math.min(DEFAULT_INITIAL_SIZE, size);
    atMost("initialSize", initial, "maxSize", size);
    int idleMin = orZero(minIdle);
    atMost("minIdle", idleMin, "maxSize", size);
    int creates = maxConcurrentCreates != null
        ? maxConcurrentCreates : Math.min(DEFAULT_MAX_CONCURRENT_CREATES, size);
    atMost("maxConcurrentCreates", creates, "maxSize", size);

    // Times: keepalive must come before retirement; defaults make way for what was set.
    Duration life = maxLifeTime;
    Duration keepalive = keepaliveInterval;
    if (life != null && keepalive != null && !keepalive.isZero() && !PoolConfig.isNoLimit(keepalive)
        && keepalive.compareTo(life) >= 0) {
      throw new IllegalArgumentException("keepaliveInterval (" + keepalive
          + ") must be < maxLifeTime (" + life + "), or zero to disable keepalive");
    }
    if (life == null) {
      life = keepalive != null && keepalive.compareTo(DEFAULT_MAX_LIFE_TIME) >= 0
          ? capped(keepalive.multipliedBy(2)) : DEFAULT_MAX_LIFE_TIME;
    }
    if (keepalive == null) {
      keepalive = min(DEFAULT_KEEPALIVE_INTERVAL, min(life.dividedBy(2), maxIdleTime.dividedBy(2)));
    }
    Duration housekeeping = backgroundEvictionInterval;
    if (housekeeping == null) {
      Duration shortest = min(life, maxIdleTime);
      if (!keepalive.isZero()) {
        shortest = min(shortest, keepalive);
      }
      if (!leakDetectionThreshold.isZero()) {
        shortest = min(shortest, leakDetectionThreshold);
      }
      housekeeping = max(MIN_BACKGROUND_EVICTION_INTERVAL,
          min(DEFAULT_BACKGROUND_EVICTION_INTERVAL, shortest.dividedBy(2)));
    }

    String name = poolName != null ? poolName : "lagoon-" + POOL_COUNTER.incrementAndGet();
    return new PoolConfig(factory, name, size, initial, idleMin, maxPendingAcquires,
        maxAcquireTime, maxCreateConnectionTime, creates, maxCloseTime,
        scheduler != null ? scheduler : Schedulers.parallel(), validationDepth, validationQuery,
        maxValidationTime, validationSkipWindow, maxIdleTime, life, keepalive, housekeeping,
        acquireRetry, postAllocate, preRelease, registerJmx, sessionReset, leakDetectionThreshold);
  }

  private static int orZero(@Nullable Integer value) {
    return value != null ? value : 0;
  }

  private static Duration min(Duration a, Duration b) {
    return a.compareTo(b) <= 0 ? a : b;
  }

  private static Duration max(Duration a, Duration b) {
    return a.compareTo(b) >= 0 ? a : b;
  }

  /** A duration of {@link #NO_LIMIT} or more is {@code NO_LIMIT}, so nanoseconds never overflow. */
  private static Duration capped(Duration value) {
    return PoolConfig.isNoLimit(value) ? NO_LIMIT : value;
  }

  /** A positive timeout, or r2dbc-pool's negative "no timeout"; zero has no meaning here. */
  private static Duration positiveOrNoLimit(String option, Duration value) {
    Objects.requireNonNull(value, () -> option + " must not be null");
    if (value.isZero()) {
      throw new IllegalArgumentException(option + " (" + value
          + ") must be positive, or negative for no limit");
    }
    return value.isNegative() ? NO_LIMIT : capped(value);
  }

  private static Duration notNegative(String option, Duration value) {
    Objects.requireNonNull(value, () -> option + " must not be null");
    if (value.isNegative()) {
      throw new IllegalArgumentException(option + " (" + value + ") must not be negative");
    }
    return capped(value);
  }

  private static int atLeast(String option, int value, int min) {
    if (value < min) {
      throw new IllegalArgumentException(option + " (" + value + ") must be >= " + min);
    }
    return value;
  }

  private static void atMost(String option, int value, String otherOption, int other) {
    if (value > other) {
      throw new IllegalArgumentException(
          option + " (" + value + ") must be <= " + otherOption + " (" + other + ")");
    }
  }

  private static Duration positive(String option, Duration value) {
    Objects.requireNonNull(value, () -> option + " must not be null");
    if (value.isNegative() || value.isZero()) {
      throw new IllegalArgumentException(option + " (" + value + ") must be positive");
    }
    return capped(value);
  }
}
