package io.lagoon.internal;

import java.util.ArrayDeque;
import reactor.core.Exceptions;
import reactor.core.publisher.Operators;
import reactor.util.context.Context;

/**
 * Runs deliveries to waiting subscribers one after the other on the current thread instead of
 * nested in each other. With a synchronous driver, a delivery runs the subscriber's code, which
 * may release a connection, which delivers to the next waiter, and so on: without this the stack
 * would grow with the length of the queue.
 */
final class Trampoline {

  private static final ThreadLocal<Trampoline> LOCAL = ThreadLocal.withInitial(Trampoline::new);

  private final ArrayDeque<Runnable> queue = new ArrayDeque<>();
  private boolean running;

  private Trampoline() {}

  /** Runs {@code task} now, or after the task this thread is already running. */
  static void run(Runnable task) {
    Trampoline t = LOCAL.get();
    if (t.running) {
      t.queue.addLast(task);
      return;
    }
    t.running = true;
    try {
      Runnable next = task;
      while (next != null) {
        runSafely(next);
        next = t.queue.pollFirst();
      }
    } finally {
      t.running = false;
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
