package io.lagoon.internal;

import io.lagoon.PoolStats;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.Arrays;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.LongAdder;
import org.jspecify.annotations.Nullable;
import reactor.util.Logger;
import reactor.util.Loggers;

/**
 * Reports connections that their borrowers keep: one lent longer than {@code
 * leakDetectionThreshold} (a possible leak), and one whose handle was collected without {@code
 * close()} (a certain one, which {@link AbandonedHandles#reclaim} takes back).
 *
 * <p>With detection on, each {@code create()} call records its caller's stack in a {@link
 * BorrowSite} (filled by the JVM, turned into text only if it is ever logged); each lend records
 * when it started and that site in a {@link Lend} on its entry. Housekeeping calls {@link #check}:
 * a lend past the threshold is reported once, at WARN, with the site's stack, counted, and sent to
 * listeners; when that lend is given back, an INFO says after how long. With detection off, no
 * site and no record exist: every method returns after one read of a final field.
 *
 * <p>Threads: {@link #lent} runs on the lender's thread and {@link #returned} on the releaser's,
 * each the only one acting on that lend at that moment; {@link #check} runs on housekeeping and
 * reads the entries' records without synchronization. A record is immutable but for its state, so
 * a racy read sees it whole; it counts only while its stamp is the entry's current one, so a stale
 * record is ignored. Its state moves by CAS, so a lend is reported at most once, and an INFO
 * follows only a WARN.
 */
final class LeakDetector {

  private static final Logger LOG = Loggers.getLogger(LeakDetector.class);

  private final PoolCore core;
  private final Slots slots;
  private final boolean enabled;
  private final long thresholdNanos;
  private final long thresholdMillis;
  private final LongAdder reported = new LongAdder();

  LeakDetector(PoolCore core, PoolConfig config, Slots slots) {
    this.core = core;
    this.slots = slots;
    this.enabled = config.leakDetection();
    this.thresholdNanos = config.leakDetectionThreshold().toNanos();
    this.thresholdMillis = config.leakDetectionThreshold().toMillis();
  }

  boolean enabled() {
    return enabled;
  }

  /** Where a connection was asked for: the caller's stack, with detection on; else null. */
  @Nullable Throwable borrowSite() {
    return enabled ? new BorrowSite(Thread.currentThread().getName()) : null;
  }

  /** Lends past the threshold reported so far. */
  long reported() {
    return reported.sum();
  }

  // ---------------------------------------------------------------- lend and return

  /** A lend with {@code stamp} starts on {@code e}, asked for at {@code site} (null: unknown). */
  void lent(PooledEntry e, long stamp, @Nullable Throwable site) {
    if (enabled) {
      e.leak = new Lend(stamp, core.now(), site);
    }
  }

  /** The lend with {@code stamp} came back at {@code now}: an INFO if it was reported. */
  void returned(PooledEntry e, long stamp, long now) {
    if (!enabled) {
      return;
    }
    Lend lend = e.leak;
    if (lend != null && lend.stamp == stamp && lend.end() == Lend.REPORTED) {
      LOG.info("Pool '{}': the connection reported as a possible leak came back after {} ms"
          + " (create() called on thread '{}')", core.name(), millis(now - lend.lentAtNanos),
          lend.thread());
    }
  }

  // ---------------------------------------------------------------- housekeeping

  /** Reports, once each, the lends that have lasted longer than the threshold at {@code now}. */
  void check(long now) {
    if (!enabled) {
      return;
    }
    for (int i = 0, n = slots.length(); i < n; i++) {
      PooledEntry e = slots.get(i);
      Lend lend = e != null ? e.leak : null;
      if (lend == null || e.stamp() != lend.stamp) {
        continue; // not lent, or lent again and the new record not seen yet: next round
      }
      long held = now - lend.lentAtNanos;
      if (held >= thresholdNanos && lend.report()) {
        reported.increment();
        Throwable site = lend.site;
        String text = "Pool '{}': a connection has been lent for {} ms, longer than"
            + " leakDetectionThreshold ({} ms); it may have leaked: its borrower has not closed it"
            + " [{}]";
        if (site != null) {
          LOG.warn(text + "; it was borrowed here:", core.name(), millis(held), thresholdMillis,
              core.stats(), BorrowSite.forLog(site));
        } else {
          LOG.warn(text, core.name(), millis(held), thresholdMillis, core.stats());
        }
        core.events().leak(held);
      }
    }
  }

  // ---------------------------------------------------------------- abandoned handles

  /**
   * Logs that the lend with {@code stamp} on {@code e} was abandoned (its handle collected without
   * {@code close()}), with its borrow site when detection is on.
   */
  void abandoned(PooledEntry e, long stamp, PoolStats stats) {
    String text = "Pool '{}': a lent connection was never closed and nothing refers to it any more"
        + " (dropped by an operator such as timeout() as it arrived, or a missing close());"
        + " it was closed and its slot freed [{}]";
    Lend lend = enabled ? e.leak : null;
    Throwable site = lend != null && lend.stamp == stamp ? lend.site : null;
    if (site != null) {
      LOG.warn(text + "; it was borrowed here:", core.name(), stats, BorrowSite.forLog(site));
    } else if (enabled) {
      LOG.warn(text, core.name(), stats);
    } else {
      LOG.warn(text + "; set leakDetectionThreshold to log where it was borrowed", core.name(),
          stats);
    }
  }

  private static long millis(long nanos) {
    return TimeUnit.NANOSECONDS.toMillis(Math.max(0, nanos));
  }

  // ---------------------------------------------------------------- records

  /** One lend while detection is on: its stamp, start and borrow site, and whether reported. */
  static final class Lend {
    static final int ACTIVE = 0;
    static final int REPORTED = 1;
    static final int ENDED = 2;

    private static final VarHandle STATE;

    static {
      try {
        STATE = MethodHandles.lookup().findVarHandle(Lend.class, "state", int.class);
      } catch (ReflectiveOperationException e) {
        throw new ExceptionInInitializerError(e);
      }
    }

    final long stamp;
    final long lentAtNanos;
    final @Nullable Throwable site;
    private volatile int state = ACTIVE;

    Lend(long stamp, long lentAtNanos, @Nullable Throwable site) {
      this.stamp = stamp;
      this.lentAtNanos = lentAtNanos;
      this.site = site;
    }

    /** ACTIVE -> REPORTED; false if it was reported or given back already. */
    boolean report() {
      return STATE.compareAndSet(this, ACTIVE, REPORTED);
    }

    /** The lend ended; returns the state it had. */
    int end() {
      return (int) STATE.getAndSet(this, ENDED);
    }

    String thread() {
      return site instanceof BorrowSite b ? b.thread : "unknown";
    }
  }

  /**
   * The stack of a {@code create()} call. The JVM records it when this is constructed; it becomes
   * text only when logged. Never thrown.
   */
  static final class BorrowSite extends Throwable {
    private static final long serialVersionUID = 1L;
    private static final String POOL = "io.lagoon.ConnectionPool";
    private static final String INTERNAL = "io.lagoon.internal.";

    final String thread;

    BorrowSite(String thread) {
      super(null, null, false, true);
      this.thread = thread;
    }

    @Override
    public String getMessage() {
      return "create() called on thread '" + thread + "'";
    }

    /**
     * A copy of {@code site} whose stack starts at the borrower's code: the pool's own frames on
     * top (create(), withConnection()) are left out.
     */
    static Throwable forLog(Throwable site) {
      if (!(site instanceof BorrowSite b)) {
        return site;
      }
      StackTraceElement[] frames = b.getStackTrace();
      int first = 0;
      while (first < frames.length - 1 && isPools(frames[first].getClassName())) {
        first++;
      }
      BorrowSite copy = new BorrowSite(b.thread);
      copy.setStackTrace(Arrays.copyOfRange(frames, first, frames.length));
      return copy;
    }

    private static boolean isPools(String className) {
      return className.startsWith(INTERNAL) || className.equals(POOL)
          || className.startsWith(POOL + "$");
    }
  }
}
