package io.lagoon.internal;

import java.util.Iterator;
import java.util.concurrent.ConcurrentLinkedDeque;
import java.util.concurrent.atomic.AtomicInteger;
import org.jspecify.annotations.Nullable;

/**
 * The queue of Acquires that wait, and {@code pending}, how many of them are WAITING: a counter,
 * never a queue scan. An Acquire leaves WAITING exactly once, by CAS (assigned, cancelled, timed
 * out, failed); a dead node stays in the deque until someone polls it or a sweep runs. Who is
 * served, and when the queue is looked at (I3, I4), is decided in {@link PoolCore}.
 *
 * <p>Lock-free; any method may run on any thread. {@link #isEmpty} is one volatile read.
 */
final class Waiters implements Iterable<Acquire> {

  private final PoolCore core;
  private final ConcurrentLinkedDeque<Acquire> waiters = new ConcurrentLinkedDeque<>();
  private final AtomicInteger pending = new AtomicInteger();
  private final AtomicInteger deadWaiters = new AtomicInteger();

  Waiters(PoolCore core) {
    this.core = core;
  }

  boolean isEmpty() {
    return waiters.isEmpty();
  }

  /** The head of the queue, removed; it may have left WAITING already. */
  @Nullable Acquire pollFirst() {
    return waiters.pollFirst();
  }

  /** Oldest first; a node met may have left WAITING already. */
  @Override
  public Iterator<Acquire> iterator() {
    return waiters.iterator();
  }

  /** Counts one more pending acquire, unless {@code max} are pending already: false then. */
  boolean tryCount(int max) {
    int p;
    do {
      p = pending.get();
      if (p >= max) {
        return false;
      }
    } while (!pending.compareAndSet(p, p + 1));
    return true;
  }

  /** An acquire counted by {@link #tryCount} that never joined, or a polled one that was served. */
  void uncount() {
    pending.decrementAndGet();
  }

  /** Joins an acquire counted by {@link #tryCount}, last. */
  void addLast(Acquire a) {
    waiters.offerLast(a);
  }

  /** Counts an acquire that waits again and puts it at the head of the queue. */
  void addFirst(Acquire a) {
    pending.incrementAndGet();
    waiters.offerFirst(a);
  }

  /** Called once per Acquire that leaves WAITING other than by assignment. */
  void left(boolean leavesDeadNode) {
    pending.decrementAndGet();
    if (leavesDeadNode && deadWaiters.incrementAndGet() > Math.max(64, pending.get())) {
      deadWaiters.set(0);
      waiters.removeIf(w -> w.state() != Acquire.WAITING);
    }
  }

  int pending() {
    return pending.get();
  }

  /** Fails every queued acquire: the pool closed. */
  void failAll() {
    Acquire w;
    while ((w = waiters.pollFirst()) != null) {
      w.fail(core.closedError("the pool closed while this subscriber waited"));
    }
  }

  /**
   * How long the oldest waiting acquire has waited; 0 when none waits. Amortized O(1): it reads
   * the head of the queue and drops the dead nodes it meets there, each of them once.
   */
  long oldestWaitNanos() {
    if (pending.get() <= 0) {
      return 0;
    }
    for (Iterator<Acquire> it = waiters.iterator(); it.hasNext(); ) {
      Acquire a = it.next();
      if (a.state() == Acquire.WAITING) {
        return Math.max(0, core.now() - a.waitStartNanos);
      }
      it.remove(); // cancelled, timed out or failed: nobody polled it yet
    }
    return 0;
  }
}
