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
  private int maxSize = DEFAULT_MAX_SIZE;
  private @Nullable Integer initialSize;
  private int minIdle;
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
  private Duration maxLifeTime = DEFAULT_MAX_LIFE_TIME;
  private Duration keepaliveInterval = DEFAULT_KEEPALIVE_INTERVAL;
  private Duration backgroundEvictionInterval = DEFAULT_BACKGROUND_EVICTION_INTERVAL;
  private int acquireRetry = 0;
  private @Nullable Function<? super Connection, ? extends Publisher<Void>> postAllocate;
  private @Nullable Function<? super Connection, ? extends Publisher<Void>> preRelease;
  private boolean registerJmx;
  private SessionReset sessionReset = SessionReset.AUTO;
  private final List<PoolListener> listeners = new ArrayList<>();

  ConnectionPoolBuilder(ConnectionFactory factory) {
    this.factory = Objects.requireNonNull(factory, "connectionFactory must not be null");
    if (factory instanceof ConnectionPool) {
      throw new IllegalArgumentException(
          "connectionFactory is already a ConnectionPool ('" + ((ConnectionPool) factory).name()
              + "'): a pool must wrap a driver's ConnectionFactory, not another pool");
    }
  }

  /** The most connections open, opening or closing at once. Default 10; at least 1. */
  public ConnectionPoolBuilder maxSize(int maxSize) {
    this.maxSize = atLeast("maxSize", maxSize, 1);
    return this;
  }

  /**
   * Connections opened in the background as soon as the pool is built, and by {@link
   * ConnectionPool#warmup()}. Default 10 (or {@code maxSize} when smaller); 0 to open none up front.
   */
  public ConnectionPoolBuilder initialSize(int initialSize) {
    this.initialSize = atLeast("initialSize", initialSize, 0);
    return this;
  }

  /** Idle connections the pool keeps open. Default 0; at most {@code maxSize}. */
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
   * Default 30 s; must be positive.
   */
  public ConnectionPoolBuilder maxAcquireTime(Duration maxAcquireTime) {
    this.maxAcquireTime = positive("maxAcquireTime", maxAcquireTime);
    return this;
  }

  /**
   * The bound on opening one physical connection; a slower attempt is cancelled and counts as a
   * failed attempt. Default 10 s; must be positive.
   */
  public ConnectionPoolBuilder maxCreateConnectionTime(Duration maxCreateConnectionTime) {
    this.maxCreateConnectionTime = positive("maxCreateConnectionTime", maxCreateConnectionTime);
    return this;
  }

  /**
   * How many physical connections may be opening at once. Default 3 (or {@code maxSize} when
   * smaller): see {@link #DEFAULT_MAX_CONCURRENT_CREATES}. Between 1 and {@code maxSize}.
   */
  public ConnectionPoolBuilder maxConcurrentCreates(int maxConcurrentCreates) {
    this.maxConcurrentCreates = atLeast("maxConcurrentCreates", maxConcurrentCreates, 1);
    return this;
  }

  /**
   * The bound on closing one physical connection. When it passes, the pool stops waiting and frees
   * the connection's slot. Default 5 s; must be positive.
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
   * longer is closed and replaced. Default 5 s; must be positive.
   */
  public ConnectionPoolBuilder maxValidationTime(Duration maxValidationTime) {
    this.maxValidationTime = positive("maxValidationTime", maxValidationTime);
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

  /** Idle connections beyond {@code minIdle} are closed after this. Default 30 min; positive. */
  public ConnectionPoolBuilder maxIdleTime(Duration maxIdleTime) {
    this.maxIdleTime = positive("maxIdleTime", maxIdleTime);
    return this;
  }

  /**
   * Connections are retired at this age minus a random jitter of up to 2.5 %, so a pool never
   * expires at once; a lent connection is retired when it comes back. Default 30 min; positive.
   */
  public ConnectionPoolBuilder maxLifeTime(Duration maxLifeTime) {
    this.maxLifeTime = positive("maxLifeTime", maxLifeTime);
    return this;
  }

  /**
   * Idle connections are validated this often (minus up to 10 % jitter), so a connection that the
   * server or a firewall dropped is replaced before a borrower meets it, and traffic keeps idle
   * ones alive. Default 2 min; zero disables; otherwise less than {@code maxLifeTime}.
   */
  public ConnectionPoolBuilder keepaliveInterval(Duration keepaliveInterval) {
    this.keepaliveInterval = notNegative("keepaliveInterval", keepaliveInterval);
    return this;
  }

  /**
   * How often housekeeping runs: idle and lifetime retirement, keepalive, {@code minIdle} refill.
   * Default 30 s; positive.
   */
  public ConnectionPoolBuilder backgroundEvictionInterval(Duration backgroundEvictionInterval) {
    this.backgroundEvictionInterval =
        positive("backgroundEvictionInterval", backgroundEvictionInterval);
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

  PoolConfig config() {
    int initial = initialSize != null ? initialSize : Math.min(DEFAULT_INITIAL_SIZE, maxSize);
    atMost("initialSize", initial, "maxSize", maxSize);
    atMost("minIdle", minIdle, "maxSize", maxSize);
    int creates = maxConcurrentCreates != null
        ? maxConcurrentCreates : Math.min(DEFAULT_MAX_CONCURRENT_CREATES, maxSize);
    atMost("maxConcurrentCreates", creates, "maxSize", maxSize);
    if (!keepaliveInterval.isZero() && keepaliveInterval.compareTo(maxLifeTime) >= 0) {
      throw new IllegalArgumentException("keepaliveInterval (" + keepaliveInterval
          + ") must be < maxLifeTime (" + maxLifeTime + "), or zero to disable keepalive");
    }
    String name = poolName != null ? poolName : "lagoon-" + POOL_COUNTER.incrementAndGet();
    return new PoolConfig(factory, name, maxSize, initial, minIdle, maxPendingAcquires,
        maxAcquireTime, maxCreateConnectionTime, creates, maxCloseTime,
        scheduler != null ? scheduler : Schedulers.parallel(), validationDepth, validationQuery,
        maxValidationTime, validationSkipWindow, maxIdleTime, maxLifeTime, keepaliveInterval,
        backgroundEvictionInterval, acquireRetry, postAllocate, preRelease, registerJmx,
        sessionReset);
  }

  private static Duration notNegative(String option, Duration value) {
    Objects.requireNonNull(value, () -> option + " must not be null");
    if (value.isNegative()) {
      throw new IllegalArgumentException(option + " (" + value + ") must not be negative");
    }
    return value;
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
    return value;
  }
}
