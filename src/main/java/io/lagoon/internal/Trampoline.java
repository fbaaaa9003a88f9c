package io.lagoon.internal;

import java.util.ArrayList;
import reactor.core.Exceptions;
import reactor.core.publisher.Operators;
import reactor.util.context.Context;

/**
 * Bounds the stack depth of deliveries to waiting subscribers on one thread. With a synchronous
 * driver, a delivery runs the subscriber's code, which may release a connection, which delivers to
 * the next waiter, and so on: without a bound the stack would grow with the length of the queue.
 *
 * <p>A delivery made while this thread is already delivering runs nested, up to {@link #MAX_DEPTH}
 * levels; beyond that it is queued and runs, in order, when the innermost level running below the
 * limit finishes its task. Nesting matters: a subscriber that blocks on another acquire inside its
 * own delivery (common with synchronous drivers) must get that connection on this thread, and a
 * queued delivery would wait for the very call that blocks.
 *
 * <p>{@link #hold} runs pool bookkeeping during which deliveries must wait: everything it delivers
 * is queued until the bookkeeping is done, then delivered in order.
 */
final class Trampoline {

  static final int MAX_DEPTH = 8;

  private static final ThreadLocal<Trampoline> LOCAL = ThreadLocal.withInitial(Trampoline::new);

  private final ArrayList<Task> queue = new ArrayList<>();
  private int depth;
  private boolean holding;

  private Trampoline() {}

  private record Task(Runnable body, boolean hold) {}

  /** Runs a delivery now, nested, or queued if this thread holds or is too deep. */
  static void run(Runnable delivery) {
    submit(delivery, false);
  }

  /** Runs {@code bookkeeping}; the deliveries it makes wait until it returns. */
  static void hold(Runnable bookkeeping) {
    submit(bookkeeping, true);
  }

  private static void submit(Runnable body, boolean hold) {
    Trampoline t = LOCAL.get();
    if (t.holding || t.depth >= MAX_DEPTH) {
      t.queue.add(new Task(body, hold));
      return;
    }
    int mark = t.queue.size(); // this level drains only what was queued while it ran
    t.depth++;
    try {
      t.holding = hold;
      runSafely(body);
      t.holding = false;
      while (t.queue.size() > mark) {
        Task next = t.queue.remove(mark);
        t.holding = next.hold;
        runSafely(next.body);
        t.holding = false;
      }
    } finally {
      t.holding = false; // a level is entered only when not holding
      t.depth--;
    }
  }

  private static void runSafely(Runnable task) {
    try {
      task.run();
    } catch (Throwable e) {
      // A subscriber that throws from onNext breaks the Reactive Streams rules; the other
      // deliveries queued here must still happen.
      Exceptions.throwIfJvmFatal(e);
      Operators.onErrorDropped(e, Context.empty());
    }
  }
}
