package io.lagoon.testing;

import io.r2dbc.spi.ConnectionFactory;
import io.r2dbc.spi.ConnectionFactoryMetadata;
import io.r2dbc.spi.R2dbcNonTransientResourceException;
import java.time.Duration;
import java.util.List;
import java.util.Objects;
import java.util.Queue;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Supplier;
import reactor.core.publisher.Mono;
import reactor.core.scheduler.Scheduler;
import reactor.core.scheduler.Schedulers;

/**
 * A test-only R2DBC driver whose behaviour is steered by knobs and whose use is observable through
 * counters.
 *
 * <p>All knobs may be changed at any time, from any thread; they are read when a connect (or close)
 * is subscribed to. Counters are updated with atomics only; no lock is ever held while calling out.
 *
 * <h2>Life-cycle accounting</h2>
 *
 * <ul>
 *   <li>A connect attempt starts when the {@link #create()} publisher is subscribed to
 *       ({@link #connectAttempts()}); while it has not signalled it is "in flight".
 *   <li>A successful connect increments {@link #opened()} and yields a {@link FakeConnection} with
 *       the next id (1, 2, 3, ...).
 *   <li>A close starts when a {@link FakeConnection#close()} publisher is subscribed to on a
 *       connection that was not closed before ({@link #closed()}); it stays "closing" until that
 *       close completes. A close of an already closed (or closing) connection counts as
 *       {@link #doubleClosed()} and completes at once. Merely calling {@code close()} without
 *       subscribing does nothing, as with a real driver, so a pool that forgets to subscribe leaks.
 *   <li>{@link #live()} = connects in flight + open connections + closes not yet completed, i.e.
 *       everything that would hold a server slot; {@link #maxLive()} is its high-water mark.
 * </ul>
 */
public final class FakeConnectionFactory implements ConnectionFactory {

    /** The default connect failure. */
    public static final Supplier<Throwable> DEFAULT_CONNECT_FAILURE =
            () -> new R2dbcNonTransientResourceException("connection refused (fake)");

    private static final ConnectionFactoryMetadata METADATA = () -> "fake";

    // ---- knobs ----
    private volatile Duration connectLatency = Duration.ZERO;
    private volatile Duration closeLatency = Duration.ZERO;
    private volatile Scheduler scheduler; // null: Schedulers.parallel() looked up at use time
    private final AtomicInteger failNextConnects = new AtomicInteger();
    private volatile boolean failConnects;
    private volatile Supplier<? extends Throwable> connectFailure = DEFAULT_CONNECT_FAILURE;
    private volatile boolean hangConnects;
    private volatile boolean hangCloses;

    // ---- counters ----
    private final AtomicInteger connectAttempts = new AtomicInteger();
    private final AtomicInteger connectsInFlight = new AtomicInteger();
    private final AtomicInteger failedConnects = new AtomicInteger();
    private final AtomicInteger cancelledConnects = new AtomicInteger();
    private final AtomicInteger opened = new AtomicInteger();
    private final AtomicInteger closed = new AtomicInteger();
    private final AtomicInteger closing = new AtomicInteger();
    private final AtomicInteger cancelledCloses = new AtomicInteger();
    private final AtomicInteger doubleClosed = new AtomicInteger();
    private final AtomicInteger usedAfterClose = new AtomicInteger();
    private final AtomicInteger live = new AtomicInteger();
    private final AtomicInteger maxLive = new AtomicInteger();

    private final AtomicLong ids = new AtomicLong();
    private final Queue<FakeConnection> connections = new ConcurrentLinkedQueue<>();

    // ------------------------------------------------------------------------------------------
    // ConnectionFactory
    // ------------------------------------------------------------------------------------------

    /**
     * Returns a cold publisher: each subscription is one connect attempt, shaped by the knobs as
     * they are at subscription time. With a zero connect latency, the connection (or failure) is
     * signalled synchronously on the subscribing thread; otherwise after the latency on the
     * configured scheduler ({@code Schedulers.parallel()} by default, looked up at subscription
     * time so that virtual time applies). Failures are signalled after the latency too. A hanging
     * connect never signals; cancelling it (or cancelling during the latency) counts in {@link
     * #cancelledConnects()}.
     */
    @Override
    public Mono<FakeConnection> create() {
        return Mono.defer(this::connect);
    }

    @Override
    public ConnectionFactoryMetadata getMetadata() {
        return METADATA;
    }

    private Mono<FakeConnection> connect() {
        connectAttempts.incrementAndGet();
        connectsInFlight.incrementAndGet();
        incrementLive();

        // exactly one of success / failure / cancel settles this attempt
        AtomicBoolean settled = new AtomicBoolean();
        Runnable onCancel = () -> {
            if (settled.compareAndSet(false, true)) {
                cancelledConnects.incrementAndGet();
                connectsInFlight.decrementAndGet();
                live.decrementAndGet();
            }
        };

        if (hangConnects) {
            return Mono.<FakeConnection>never().doOnCancel(onCancel);
        }
        boolean fail = failConnects || consumeOne(failNextConnects);
        Supplier<? extends Throwable> failure = connectFailure;
        Duration latency = connectLatency;

        if (latency.isZero() || latency.isNegative()) {
            return settle(settled, fail, failure); // synchronously, on the subscribing thread
        }
        return Mono.delay(latency, currentScheduler())
                .flatMap(tick -> settle(settled, fail, failure))
                .doOnCancel(onCancel);
    }

    private Mono<FakeConnection> settle(
            AtomicBoolean settled, boolean fail, Supplier<? extends Throwable> failure) {
        if (!settled.compareAndSet(false, true)) {
            return Mono.empty(); // already cancelled
        }
        connectsInFlight.decrementAndGet();
        if (fail) {
            failedConnects.incrementAndGet();
            live.decrementAndGet();
            return Mono.error(failure.get());
        }
        // live stays as is: the slot moves from "in flight" to "open"
        FakeConnection connection = new FakeConnection(this, ids.incrementAndGet());
        connection.note("opened");
        connections.add(connection);
        opened.incrementAndGet();
        return Mono.just(connection);
    }

    private static boolean consumeOne(AtomicInteger counter) {
        for (;;) {
            int n = counter.get();
            if (n <= 0) {
                return false;
            }
            if (counter.compareAndSet(n, n - 1)) {
                return true;
            }
        }
    }

    private void incrementLive() {
        int now = live.incrementAndGet();
        for (;;) {
            int max = maxLive.get();
            if (now <= max || maxLive.compareAndSet(max, now)) {
                return;
            }
        }
    }

    // ---- callbacks from FakeConnection ----

    Scheduler currentScheduler() {
        Scheduler s = scheduler;
        return s != null ? s : Schedulers.parallel();
    }

    Duration closeLatencyKnob() {
        return closeLatency;
    }

    boolean hangClosesKnob() {
        return hangCloses;
    }

    void onCloseStarted() {
        closed.incrementAndGet();
        closing.incrementAndGet();
    }

    void onCloseCompleted() {
        closing.decrementAndGet();
        live.decrementAndGet();
    }

    void onCloseCancelled() {
        cancelledCloses.incrementAndGet();
    }

    void onDoubleClose() {
        doubleClosed.incrementAndGet();
    }

    void onUsedAfterClose() {
        usedAfterClose.incrementAndGet();
    }

    // ------------------------------------------------------------------------------------------
    // knobs
    // ------------------------------------------------------------------------------------------

    /** Delay before a connect signals; zero (the default) completes synchronously. */
    public FakeConnectionFactory connectLatency(Duration latency) {
        this.connectLatency = Objects.requireNonNull(latency, "latency");
        return this;
    }

    /** Delay before a close completes; zero (the default) completes synchronously. */
    public FakeConnectionFactory closeLatency(Duration latency) {
        this.closeLatency = Objects.requireNonNull(latency, "latency");
        return this;
    }

    /**
     * Scheduler for latencies; {@code null} (the default) means {@code Schedulers.parallel()} as
     * looked up at the moment of each connect or close.
     */
    public FakeConnectionFactory scheduler(Scheduler scheduler) {
        this.scheduler = scheduler;
        return this;
    }

    /** Makes the next {@code n} connect attempts fail (replaces any previous count). */
    public FakeConnectionFactory failNextConnects(int n) {
        if (n < 0) {
            throw new IllegalArgumentException("n must be >= 0: " + n);
        }
        failNextConnects.set(n);
        return this;
    }

    /** Makes every connect attempt fail while {@code true}. */
    public FakeConnectionFactory failConnects(boolean fail) {
        this.failConnects = fail;
        return this;
    }

    /** What a failing connect signals; called once per failing attempt. */
    public FakeConnectionFactory connectFailure(Supplier<? extends Throwable> failure) {
        this.connectFailure = Objects.requireNonNull(failure, "failure");
        return this;
    }

    /** While {@code true}, connects started from now on never signal. */
    public FakeConnectionFactory hangConnects(boolean hang) {
        this.hangConnects = hang;
        return this;
    }

    /** While {@code true}, closes started from now on never complete (the connection stays closing). */
    public FakeConnectionFactory hangCloses(boolean hang) {
        this.hangCloses = hang;
        return this;
    }

    /** Breaks every connection opened so far (not those opened later). */
    public FakeConnectionFactory breakAll() {
        for (FakeConnection c : connections) {
            c.breakConnection();
        }
        return this;
    }

    /** Puts every knob back to its default. Counters and connections are kept. */
    public FakeConnectionFactory reset() {
        connectLatency = Duration.ZERO;
        closeLatency = Duration.ZERO;
        scheduler = null;
        failNextConnects.set(0);
        failConnects = false;
        connectFailure = DEFAULT_CONNECT_FAILURE;
        hangConnects = false;
        hangCloses = false;
        return this;
    }

    // ------------------------------------------------------------------------------------------
    // counters
    // ------------------------------------------------------------------------------------------

    /** Subscriptions to {@link #create()}. */
    public int connectAttempts() {
        return connectAttempts.get();
    }

    /** Connect attempts that have not yet signalled nor been cancelled (includes hanging ones). */
    public int connectsInFlight() {
        return connectsInFlight.get();
    }

    /** Connect attempts that signalled an error. */
    public int failedConnects() {
        return failedConnects.get();
    }

    /** Connect attempts cancelled while in flight (hanging, or waiting out the latency). */
    public int cancelledConnects() {
        return cancelledConnects.get();
    }

    /** Successful connects. */
    public int opened() {
        return opened.get();
    }

    /** Closes started on a connection that was not closed before. */
    public int closed() {
        return closed.get();
    }

    /** Closes started but not completed (hanging, or waiting out the close latency). */
    public int closing() {
        return closing.get();
    }

    /** Subscribers that cancelled a close still in progress. */
    public int cancelledCloses() {
        return cancelledCloses.get();
    }

    /** Closes of an already closed or closing connection. */
    public int doubleClosed() {
        return doubleClosed.get();
    }

    /** Calls (other than close/validate) on a closed connection, each of which was failed. */
    public int usedAfterClose() {
        return usedAfterClose.get();
    }

    /** {@code opened() - closed()}. */
    public int open() {
        return opened.get() - closed.get();
    }

    /** Connects in flight + open connections + closes not yet completed. */
    public int live() {
        return live.get();
    }

    /** High-water mark of {@link #live()}. */
    public int maxLive() {
        return maxLive.get();
    }

    /** Snapshot of every connection ever opened, in order of opening. */
    public List<FakeConnection> connections() {
        return List.copyOf(connections);
    }

    /** The connection with the given id, or {@code null}. */
    public FakeConnection connection(long id) {
        for (FakeConnection c : connections) {
            if (c.id() == id) {
                return c;
            }
        }
        return null;
    }

    @Override
    public String toString() {
        return "FakeConnectionFactory{attempts=" + connectAttempts() + ", inFlight=" + connectsInFlight()
                + ", opened=" + opened() + ", closed=" + closed() + ", closing=" + closing()
                + ", live=" + live() + ", maxLive=" + maxLive() + ", doubleClosed=" + doubleClosed()
                + ", usedAfterClose=" + usedAfterClose() + "}";
    }
}
