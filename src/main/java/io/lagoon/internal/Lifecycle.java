package io.lagoon.internal;

import io.lagoon.SessionReset;
import io.r2dbc.spi.Connection;
import io.r2dbc.spi.IsolationLevel;
import io.r2dbc.spi.ValidationDepth;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Function;
import org.jspecify.annotations.Nullable;
import org.reactivestreams.Publisher;
import reactor.core.Disposable;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/**
 * What keeps connections healthy: validation before a lend, the reset after one, checking the
 * idle connections when one shows the server went away ({@link FatalErrors} decides that), and
 * housekeeping (idle and lifetime retirement, keepalive, soft eviction).
 *
 * <p>It decides and runs the I/O; every state change it causes goes through {@link PoolCore}'s
 * transitions (take an entry out of IDLE by {@link Slots#takeAllIdle}, offer it, destroy it), so
 * the core's invariants hold unchanged. It keeps the soft-eviction epoch: a connection opened in
 * an earlier one is retired.
 */
final class Lifecycle {

  private final PoolCore core;
  private final PoolConfig config;
  private final PoolerHints poolerHints;
  private final long skipWindowNanos;
  private final long maxIdleNanos;
  private final long maxLifeNanos;
  private final long keepaliveNanos;
  /** False when maxLifeTime / maxIdleTime is no limit: then no age ever retires a connection. */
  private final boolean lifeLimited;
  private final boolean idleLimited;
  private volatile @Nullable Disposable housekeeping;
  /** Idle entries taken out for keepalive or a restart check; they still count toward minIdle. */
  private final AtomicInteger revalidating = new AtomicInteger();
  /** The soft-eviction epoch: a connection opened in an earlier one is retired. */
  private final AtomicInteger epoch = new AtomicInteger();

  int revalidating() {
    return revalidating.get();
  }

  int epoch() {
    return epoch.get();
  }

  Lifecycle(PoolCore core, PoolConfig config) {
    this.core = core;
    this.config = config;
    this.poolerHints = new PoolerHints(core.name());
    this.skipWindowNanos = config.validationSkipWindow().toNanos();
    this.maxIdleNanos = config.maxIdleTime().toNanos();
    this.maxLifeNanos = config.maxLifeTime().toNanos();
    this.keepaliveNanos = config.keepaliveInterval().toNanos();
    this.lifeLimited = !PoolConfig.isNoLimit(config.maxLifeTime());
    this.idleLimited = !PoolConfig.isNoLimit(config.maxIdleTime());
  }

  // ---------------------------------------------------------------- new connections

  /** Stamps a new entry's times and jitters; its owner publishes it afterwards. */
  void opened(PooledEntry e, long now) {
    ThreadLocalRandom random = ThreadLocalRandom.current();
    e.lastAliveNanos = now;
    e.idleSinceNanos = now;
    e.expiresAtNanos = now + maxLifeNanos - random.nextLong(maxLifeNanos / 40 + 1); // <= 2.5 %
    e.keepaliveJitterNanos = random.nextLong(keepaliveNanos / 10 + 1); // <= 10 %
  }

  /**
   * Records the session state a new connection has after postAllocate, which every reset restores:
   * auto-commit and isolation level as the driver reports them and, on PostgreSQL, the settings
   * made in the session (by the driver's options or postAllocate), from which it builds the reset
   * statement. Bounded by maxCreateConnectionTime; a connection whose state cannot be read fails
   * like a failed connect.
   */
  Mono<Void> captureSession(PooledEntry e, Connection c) {
    return Timers.within(Mono.defer(() -> {
      e.initialAutoCommit = c.isAutoCommit();
      e.initialIsolation = c.getTransactionIsolationLevel();
      if (!SessionResets.isPostgres(c)) {
        return Mono.empty();
      }
      return SessionResets.syncIsolation(c).doOnNext(level -> e.initialIsolation = level)
          .then(SessionResets.postgresResetSql(c).doOnNext(sql -> e.sessionResetSql = sql))
          .then();
    }), config.maxCreateConnectionTime(), core.scheduler());
  }

  /** Runs postAllocate, bounded by maxCreateConnectionTime; empty when none is configured. */
  Mono<Void> postAllocate(Connection c) {
    Function<? super Connection, ? extends Publisher<Void>> hook = config.postAllocate();
    if (hook == null) {
      return Mono.empty();
    }
    return Timers.within(Mono.defer(() -> Mono.from(hook.apply(c))),
        config.maxCreateConnectionTime(), core.scheduler());
  }

  // ---------------------------------------------------------------- borrow

  /** Whether an entry must be closed rather than lent or pooled: broken, soft-evicted or too old. */
  boolean mustRetire(PooledEntry e, long now) {
    return e.broken || e.epoch != epoch() || lifeLimited && now - e.expiresAtNanos >= 0;
  }

  /** Whether an IDLE entry must be validated before it is lent. */
  boolean mustValidate(PooledEntry e, long now) {
    return now - e.lastAliveNanos >= skipWindowNanos;
  }

  static final int ALIVE = 1;
  static final int DEAD = 0;
  static final int UNKNOWN = -1;

  /**
   * The driver's {@code validate(LOCAL)}, when it answers synchronously (as drivers do: it asks
   * whether the socket is still open, without I/O): ALIVE or DEAD; UNKNOWN when it answers later
   * (the caller then validates asynchronously). A driver that throws counts as DEAD.
   */
  static int localCheck(Connection c) {
    LocalCheck check = new LocalCheck();
    try {
      c.validate(ValidationDepth.LOCAL).subscribe(check);
    } catch (RuntimeException e) {
      return DEAD;
    }
    return check.result();
  }

  /** Records a synchronous answer; cancels an asynchronous one, which the caller redoes. */
  private static final class LocalCheck implements org.reactivestreams.Subscriber<Boolean> {
    private org.reactivestreams.@Nullable Subscription subscription;
    private volatile int result = UNKNOWN;

    int result() {
      int r = result;
      org.reactivestreams.Subscription s = subscription;
      if (r == UNKNOWN && s != null) {
        s.cancel();
      }
      return r;
    }

    @Override
    public void onSubscribe(org.reactivestreams.Subscription s) {
      subscription = s;
      s.request(1);
    }

    @Override
    public void onNext(Boolean ok) {
      result = Boolean.TRUE.equals(ok) ? ALIVE : DEAD;
    }

    @Override
    public void onError(Throwable t) {
      result = DEAD;
    }

    @Override
    public void onComplete() {
      if (result == UNKNOWN) {
        result = DEAD; // completed without an answer
      }
    }
  }

  /** Validates {@code e}, then delivers it to {@code a}, or closes it and requeues {@code a}. */
  void validateThenDeliver(Acquire a, PooledEntry e) {
    validate(e.connection()).subscribe(ok -> {
      if (ok) {
        e.lastAliveNanos = core.now();
        Trampoline.run(() -> core.deliver(a, e));
      } else {
        e.evictReason = io.lagoon.PoolListener.EvictionReason.VALIDATION;
        core.destroy(e);
        core.requeue(a);
      }
    });
  }

  /**
   * Emits whether the connection works: the validation query runs without error, or the driver's
   * validate() says so. Never errors; a check slower than maxValidationTime counts as failed.
   */
  Mono<Boolean> validate(Connection c) {
    String query = config.validationQuery();
    Mono<Boolean> check = query != null
        ? Flux.defer(() -> c.createStatement(query).execute())
            .concatMap(r -> r.map((row, meta) -> Boolean.TRUE))
            .then(Mono.just(Boolean.TRUE))
        : Mono.defer(() -> Mono.from(c.validate(config.validationDepth())));
    return Timers.within(check, config.maxValidationTime(), core.scheduler())
        .defaultIfEmpty(Boolean.FALSE)
        .onErrorReturn(Boolean.FALSE);
  }

  // ---------------------------------------------------------------- release

  /**
   * Whether anything must run before the entry can be lent again: the borrower changed something,
   * a hook must run, or the driver reports a transaction, auto-commit or isolation level that
   * differs from the connection's initial state (however it was changed). Calls only the driver's
   * local getters; a driver that throws from them is a broken connection.
   */
  boolean needsReset(PooledEntry e, int dirty) {
    int relevant = config.sessionReset() == SessionReset.ALWAYS && e.sessionResetSql != null
        ? dirty : dirty & ~PooledConnection.RAN_SQL;
    if (relevant != 0 || config.preRelease() != null) {
      return true;
    }
    Connection c = e.connection();
    return !c.isAutoCommit() || c.isAutoCommit() != e.initialAutoCommit
        || isolationChanged(e, c);
  }

  private static boolean isolationChanged(PooledEntry e, Connection c) {
    IsolationLevel initial = e.initialIsolation;
    return initial != null && !initial.equals(c.getTransactionIsolationLevel());
  }

  /**
   * Whether the session must be reset (or, without a reset statement, the connection replaced):
   * timeouts changed through the handle, or SQL that may have changed the session, unless the
   * mode is NEVER, or any SQL in ALWAYS mode (where a reset statement exists).
   */
  private boolean needsSessionReset(PooledEntry e, int dirty) {
    if ((dirty & (PooledConnection.STATEMENT_TIMEOUT | PooledConnection.LOCK_WAIT_TIMEOUT)) != 0) {
      return true;
    }
    SessionReset mode = config.sessionReset();
    if (mode == SessionReset.NEVER) {
      return false;
    }
    boolean hasStatement = e.sessionResetSql != null;
    return (dirty & (PooledConnection.SESSION | PooledConnection.UNWRAPPED)) != 0
        || (hasStatement && mode == SessionReset.ALWAYS && dirty != 0);
  }

  /**
   * Undoes what the borrower left behind, comparing the driver's actual state with the state the
   * connection had when it was opened: preRelease, then rollback of an open transaction, then the
   * session reset statement (PostgreSQL) if the session may have changed, then auto-commit and
   * isolation level. Bounded by maxValidationTime; errors when any step fails or is too slow, or
   * when the session changed and the driver has no reset statement (the connection is replaced).
   */
  Mono<Void> reset(PooledEntry e, int dirty) {
    Connection c = e.connection();
    List<Mono<Void>> steps = new ArrayList<>(5);
    Function<? super Connection, ? extends Publisher<Void>> hook = config.preRelease();
    if (hook != null) {
      steps.add(Mono.defer(() -> Mono.from(hook.apply(c))));
    }
    if ((dirty & PooledConnection.STREAMING) != 0) {
      return Mono.error(new IllegalStateException("closed while a result was still being read:"
          + " replacing the connection"));
    }
    if ((dirty & PooledConnection.TX_SQL) != 0) {
      // By SQL, not the driver's rollbackTransaction(): a driver skips that when it has not yet
      // seen the transaction start (a BEGIN still on the wire, a cancelled multi-statement text).
      // The statement queues behind whatever still runs; without a transaction it is a no-op.
      steps.add(SessionResets.run(c, "ROLLBACK"));
    }
    steps.add(Mono.defer(() -> (dirty & PooledConnection.TX) != 0 || !c.isAutoCommit()
        ? Mono.from(c.rollbackTransaction()) : Mono.empty()));
    if (needsSessionReset(e, dirty)) {
      String sql = e.sessionResetSql;
      steps.add(sql != null ? SessionResets.run(c, sql) : Mono.error(new IllegalStateException(
          "session changed and the driver has no reset statement: replacing the connection")));
    }
    steps.add(Mono.defer(() -> c.isAutoCommit() == e.initialAutoCommit
        ? Mono.empty() : Mono.from(c.setAutoCommit(e.initialAutoCommit))));
    steps.add(Mono.defer(() -> {
      IsolationLevel initial = e.initialIsolation;
      return initial != null && isolationChanged(e, c)
          ? Mono.from(c.setTransactionIsolationLevel(initial)) : Mono.empty();
    }));
    return Timers.within(Mono.when(Flux.concat(steps)), config.maxValidationTime(),
        core.scheduler());
  }

  // ---------------------------------------------------------------- dead connections

  /**
   * An error came through a lent connection: if it means the connection is gone, mark it (it is
   * closed when it comes back); if the server went away, check the idle ones now.
   */
  void onConnectionError(PooledEntry e, Throwable error) {
    int verdict = FatalErrors.classify(error);
    if (verdict != FatalErrors.NOT_FATAL) {
      e.broken = true;
      if (verdict == FatalErrors.SERVER_GONE) {
        checkIdleNow();
      }
    } else {
      poolerHints.onError(error);
    }
  }

  /** Validates every idle connection now (the server may have restarted). */
  void checkIdleNow() {
    for (PooledEntry e : core.slots().takeAllIdle(e -> true)) {
      revalidate(e);
    }
  }

  /** Validates an OWNED entry taken from IDLE: back to the pool if it works, closed if not. */
  private void revalidate(PooledEntry e) {
    revalidating.incrementAndGet();
    validate(e.connection()).subscribe(ok -> {
      if (ok) {
        e.lastAliveNanos = core.now();
        core.offer(e);
        revalidating.decrementAndGet();
      } else {
        revalidating.decrementAndGet(); // before the slot frees, so minIdle sees the gap
        e.evictReason = io.lagoon.PoolListener.EvictionReason.VALIDATION;
        core.destroy(e);
      }
    });
  }

  // ---------------------------------------------------------------- soft eviction

  /**
   * Closes every idle connection and retires every lent one when it comes back, then opens as
   * many connections as the pool held before.
   */
  Mono<Void> softEvict() {
    return Mono.defer(() -> {
      int before = core.slots().allocated();
      epoch.incrementAndGet();
      List<Mono<Void>> closes = new ArrayList<>();
      for (PooledEntry e : core.slots().takeAllIdle(e -> true)) {
        closes.add(core.destroy(e));
      }
      return Mono.when(closes).then(core.creator().fill(before)).then();
    });
  }

  // ---------------------------------------------------------------- housekeeping

  void start() {
    long period = config.backgroundEvictionInterval().toNanos();
    housekeeping = core.scheduler().schedulePeriodically(this::housekeep, period, period,
        TimeUnit.NANOSECONDS);
  }

  void stop() {
    Disposable d = housekeeping;
    if (d != null) {
      d.dispose();
    }
  }

  /**
   * One housekeeping round: retire idle connections that are broken, soft-evicted, past their
   * lifetime (at most a quarter of maxSize per round, so a pool never turns over at once) or idle
   * beyond maxIdleTime while more than minIdle are idle; validate the ones due for keepalive; then
   * refill minIdle. Abandoned connections are taken back and lends past leakDetectionThreshold
   * reported first; a closing pool does only that, until its last connection is closed.
   */
  void housekeep() {
    core.abandoned().reclaim();
    long now = core.now();
    core.leaks().check(now);
    if (core.isClosed()) {
      return;
    }
    int[] idleLeft = {core.stats().idle()};
    int[] lifetimeBudget = {Math.max(1, config.maxSize() / 4)};
    List<PooledEntry> retire = core.slots().takeAllIdle(e -> {
      if (e.broken || e.epoch != epoch()) {
        idleLeft[0]--;
        return true;
      }
      if (lifeLimited && now - e.expiresAtNanos >= 0 && lifetimeBudget[0] > 0) {
        lifetimeBudget[0]--;
        idleLeft[0]--;
        return true;
      }
      if (idleLimited && idleLeft[0] > config.minIdle() && now - e.idleSinceNanos >= maxIdleNanos) {
        idleLeft[0]--;
        return true;
      }
      return false;
    });
    retire.forEach(core::destroy);
    if (keepaliveNanos > 0 && !PoolConfig.isNoLimit(config.keepaliveInterval())) {
      core.slots()
          .takeAllIdle(e -> now - e.lastAliveNanos >= keepaliveNanos - e.keepaliveJitterNanos)
          .forEach(this::revalidate);
    }
    core.creator().createIfNeeded(); // connects for minIdle and waiters, if any are missing
  }
}
