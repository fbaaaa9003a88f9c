package io.lagoon.internal;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;
import org.reactivestreams.Subscription;
import reactor.core.CoreSubscriber;
import reactor.core.publisher.Flux;
import reactor.core.publisher.FluxOperator;

/**
 * A stream from a lent connection that counts as open from its subscription until it terminates
 * or is cancelled, and reports its error. The count drops before the terminal signal goes
 * downstream, so a subscriber that closes the connection on completion finds it at zero.
 */
final class OpenStream<T> extends FluxOperator<T, T> {

  private final AtomicInteger open;
  private final Consumer<Throwable> onError;

  OpenStream(Flux<? extends T> source, AtomicInteger open, Consumer<Throwable> onError) {
    super(source);
    this.open = open;
    this.onError = onError;
  }

  @Override
  public void subscribe(CoreSubscriber<? super T> actual) {
    source.subscribe(new Inner<>(actual, open, onError));
  }

  private static final class Inner<T> implements CoreSubscriber<T>, Subscription {

    private static final VarHandle ENDED;

    static {
      try {
        ENDED = MethodHandles.lookup().findVarHandle(Inner.class, "ended", int.class);
      } catch (ReflectiveOperationException e) {
        throw new ExceptionInInitializerError(e);
      }
    }

    private final CoreSubscriber<? super T> actual;
    private final AtomicInteger open;
    private final Consumer<Throwable> onError;
    private volatile int ended;
    private Subscription upstream;

    Inner(CoreSubscriber<? super T> actual, AtomicInteger open, Consumer<Throwable> onError) {
      this.actual = actual;
      this.open = open;
      this.onError = onError;
    }

    @Override
    public reactor.util.context.Context currentContext() {
      return actual.currentContext();
    }

    @Override
    public void onSubscribe(Subscription s) {
      upstream = s;
      open.incrementAndGet();
      actual.onSubscribe(this);
    }

    @Override
    public void onNext(T t) {
      actual.onNext(t);
    }

    @Override
    public void onError(Throwable t) {
      end();
      onError.accept(t);
      actual.onError(t);
    }

    @Override
    public void onComplete() {
      end();
      actual.onComplete();
    }

    @Override
    public void request(long n) {
      upstream.request(n);
    }

    @Override
    public void cancel() {
      end();
      upstream.cancel();
    }

    private void end() {
      if (ENDED.compareAndSet(this, 0, 1)) {
        open.decrementAndGet();
      }
    }
  }
}
