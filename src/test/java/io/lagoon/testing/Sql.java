package io.lagoon.testing;

import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactory;
import io.r2dbc.spi.Result;
import java.time.Duration;
import org.reactivestreams.Publisher;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/**
 * Runs one statement and collects what it returns: on a connection the test holds (a pooled
 * handle, a monitor connection), or on a connection of its own opened from a factory and closed
 * afterwards. The reactive methods are lazy and may run anywhere; the blocking ones, which wait at
 * most {@link #BOUND}, are for test threads.
 */
public final class Sql {

  /** How long a blocking method waits at most. */
  public static final Duration BOUND = Duration.ofSeconds(30);

  private Sql() {}

  // ---------------------------------------------------------------- reactive

  /**
   * The first column of every row {@code sql} returns, as {@code type}. The statement is created
   * at subscription.
   */
  public static <V> Flux<V> column(Connection c, String sql, Class<V> type) {
    return Flux.defer(() -> c.createStatement(sql).execute())
        .flatMap(r -> r.map((row, meta) -> row.get(0, type)));
  }

  /**
   * The first column of every row as text ({@code "null"} for SQL NULL, which a row mapping may
   * not emit).
   */
  public static Flux<String> text(Connection c, String sql) {
    return Flux.defer(() -> c.createStatement(sql).execute())
        .flatMap(r -> r.map((row, meta) -> String.valueOf(row.get(0, String.class))));
  }

  /** The update counts of {@code sql}, one per result. */
  public static Flux<Long> updates(Connection c, String sql) {
    return Flux.defer(() -> c.createStatement(sql).execute()).flatMap(Result::getRowsUpdated);
  }

  /** {@code sql} with {@code $1} bound to {@code value}; its one row's first column as an int. */
  public static Mono<Integer> bound(Connection c, String sql, int value) {
    return Flux.defer(() -> c.createStatement(sql).bind("$1", value).execute())
        .flatMap(r -> r.map((row, meta) -> row.get(0, Integer.class)))
        .single();
  }

  // ---------------------------------------------------------------- blocking, on a held one

  /** Runs {@code sql} to its end, discarding what it returns. */
  public static void exec(Connection c, String sql) {
    updates(c, sql).blockLast(BOUND);
  }

  /** The first column of the last row {@code sql} returns (null if none). */
  public static <V> V one(Connection c, String sql, Class<V> type) {
    return column(c, sql, type).blockLast(BOUND);
  }

  /** Subscribes to {@code publisher} and waits for its end, discarding what it emits. */
  public static void run(Publisher<?> publisher) {
    Flux.from(publisher).blockLast(BOUND);
  }

  // ---------------------------------------------------------------- blocking, on a new connection

  /** Runs {@code sql} on a connection of its own from {@code factory} (closed afterwards). */
  public static void exec(ConnectionFactory factory, String sql) {
    Mono.usingWhen(Mono.from(factory.create()), c -> updates(c, sql).then(),
        Connection::close).block(BOUND);
  }

  /**
   * The first column of the one row {@code sql} returns, on a connection of its own from {@code
   * factory} (closed afterwards).
   */
  public static <V> V one(ConnectionFactory factory, String sql, Class<V> type) {
    return Mono.usingWhen(Mono.from(factory.create()), c -> column(c, sql, type).single(),
        Connection::close).block(BOUND);
  }
}
