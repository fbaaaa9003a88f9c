package io.lagoon.testing;

import io.r2dbc.spi.Batch;
import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactory;
import io.r2dbc.spi.ConnectionFactoryMetadata;
import io.r2dbc.spi.ConnectionMetadata;
import io.r2dbc.spi.IsolationLevel;
import io.r2dbc.spi.Readable;
import io.r2dbc.spi.Result;
import io.r2dbc.spi.Row;
import io.r2dbc.spi.RowMetadata;
import io.r2dbc.spi.Statement;
import io.r2dbc.spi.TransactionDefinition;
import io.r2dbc.spi.ValidationDepth;
import io.r2dbc.spi.Wrapped;
import java.time.Duration;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.LongAdder;
import java.util.function.BiFunction;
import java.util.function.Function;
import java.util.function.Predicate;
import org.reactivestreams.Publisher;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/**
 * A PostgreSQL driver seen from below the pool: each physical connection learns its backend pid
 * when it opens ({@code SELECT pg_backend_pid()}), and every statement a borrower starts on it is
 * checked against the backends the test has killed. A statement started on a connection after its
 * backend's termination was confirmed is a lend of a dead connection: it is counted per pid, and
 * so is any such statement that nevertheless succeeded (it cannot: the backend is gone).
 */
public final class PidTrackingFactory implements ConnectionFactory {

  private final ConnectionFactory real;
  private final Set<Integer> opened = ConcurrentHashMap.newKeySet();
  private final Set<Integer> killed = ConcurrentHashMap.newKeySet();
  private final Map<Integer, AtomicInteger> lendsAfterKill = new ConcurrentHashMap<>();
  private final LongAdder successesAfterKill = new LongAdder();

  public PidTrackingFactory(ConnectionFactory real) {
    this.real = real;
  }

  @Override
  public Publisher<? extends Connection> create() {
    return Mono.from(real.create()).flatMap(c ->
        Backends.pidOf(c)
            .map(pid -> {
              opened.add(pid);
              return (Connection) new Tracked(c, pid);
            })
            .onErrorResume(e -> Mono.from(c.close()).onErrorResume(x -> Mono.empty())
                .then(Mono.error(e))));
  }

  @Override
  public ConnectionFactoryMetadata getMetadata() {
    return real.getMetadata();
  }

  /** Marks pids whose termination the server confirmed. */
  public void killed(Iterable<Integer> pids) {
    pids.forEach(killed::add);
  }

  /** Backends opened so far. */
  public Set<Integer> opened() {
    return Set.copyOf(opened);
  }

  /** Per killed pid, statements started on its connection after its termination was confirmed. */
  public Map<Integer, Integer> lendsAfterKill() {
    Map<Integer, Integer> m = new java.util.TreeMap<>();
    lendsAfterKill.forEach((pid, n) -> m.put(pid, n.get()));
    return m;
  }

  /** Statements that started after their backend was killed and yet succeeded. */
  public long successesAfterKill() {
    return successesAfterKill.sum();
  }

  private final class Tracked implements Connection, Wrapped<Connection> {
    private final Connection c;
    private final int pid;

    Tracked(Connection c, int pid) {
      this.c = c;
      this.pid = pid;
    }

    @Override
    public Statement createStatement(String sql) {
      return new TrackedStatement(c.createStatement(sql), pid);
    }

    @Override
    public Publisher<Void> beginTransaction() {
      return c.beginTransaction();
    }

    @Override
    public Publisher<Void> beginTransaction(TransactionDefinition definition) {
      return c.beginTransaction(definition);
    }

    @Override
    public Publisher<Void> close() {
      return c.close();
    }

    @Override
    public Publisher<Void> commitTransaction() {
      return c.commitTransaction();
    }

    @Override
    public Batch createBatch() {
      return c.createBatch();
    }

    @Override
    public Publisher<Void> createSavepoint(String name) {
      return c.createSavepoint(name);
    }

    @Override
    public boolean isAutoCommit() {
      return c.isAutoCommit();
    }

    @Override
    public ConnectionMetadata getMetadata() {
      return c.getMetadata();
    }

    @Override
    public IsolationLevel getTransactionIsolationLevel() {
      return c.getTransactionIsolationLevel();
    }

    @Override
    public Publisher<Void> releaseSavepoint(String name) {
      return c.releaseSavepoint(name);
    }

    @Override
    public Publisher<Void> rollbackTransaction() {
      return c.rollbackTransaction();
    }

    @Override
    public Publisher<Void> rollbackTransactionToSavepoint(String name) {
      return c.rollbackTransactionToSavepoint(name);
    }

    @Override
    public Publisher<Void> setAutoCommit(boolean autoCommit) {
      return c.setAutoCommit(autoCommit);
    }

    @Override
    public Publisher<Void> setLockWaitTimeout(Duration timeout) {
      return c.setLockWaitTimeout(timeout);
    }

    @Override
    public Publisher<Void> setStatementTimeout(Duration timeout) {
      return c.setStatementTimeout(timeout);
    }

    @Override
    public Publisher<Void> setTransactionIsolationLevel(IsolationLevel level) {
      return c.setTransactionIsolationLevel(level);
    }

    @Override
    public Publisher<Boolean> validate(ValidationDepth depth) {
      return c.validate(depth);
    }

    @Override
    public Connection unwrap() {
      return c;
    }
  }

  private final class TrackedStatement implements Statement {
    private final Statement s;
    private final int pid;

    TrackedStatement(Statement s, int pid) {
      this.s = s;
      this.pid = pid;
    }

    @Override
    public Publisher<? extends Result> execute() {
      return Flux.defer(() -> {
        boolean afterKill = killed.contains(pid); // confirmed before this statement started
        if (afterKill) {
          lendsAfterKill.computeIfAbsent(pid, p -> new AtomicInteger()).incrementAndGet();
        }
        return Flux.<Result>from(s.execute()).map(r -> afterKill ? new AfterKill(r) : r);
      });
    }

    @Override
    public Statement add() {
      s.add();
      return this;
    }

    @Override
    public Statement bind(int index, Object value) {
      s.bind(index, value);
      return this;
    }

    @Override
    public Statement bind(String name, Object value) {
      s.bind(name, value);
      return this;
    }

    @Override
    public Statement bindNull(int index, Class<?> type) {
      s.bindNull(index, type);
      return this;
    }

    @Override
    public Statement bindNull(String name, Class<?> type) {
      s.bindNull(name, type);
      return this;
    }
  }

  /** A result of a statement started on a killed backend: its success is counted. */
  private final class AfterKill implements Result {
    private final Result r;

    AfterKill(Result r) {
      this.r = r;
    }

    private <T> Publisher<T> counted(Publisher<T> p) {
      return Flux.from(p).doOnComplete(successesAfterKill::increment);
    }

    @Override
    public Publisher<Long> getRowsUpdated() {
      return counted(r.getRowsUpdated());
    }

    @Override
    public <T> Publisher<T> map(BiFunction<Row, RowMetadata, ? extends T> f) {
      return counted(r.map(f));
    }

    @Override
    public <T> Publisher<T> map(Function<? super Readable, ? extends T> f) {
      return counted(r.map(f));
    }

    @Override
    public Result filter(Predicate<Segment> filter) {
      return new AfterKill(r.filter(filter));
    }

    @Override
    public <T> Publisher<T> flatMap(Function<Segment, ? extends Publisher<? extends T>> f) {
      return counted(r.flatMap(f));
    }
  }
}
