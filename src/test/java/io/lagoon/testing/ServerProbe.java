package io.lagoon.testing;

import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactories;
import io.r2dbc.spi.ConnectionFactory;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.time.Duration;
import java.util.function.Function;
import java.util.function.Supplier;
import org.jspecify.annotations.Nullable;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.core.scheduler.Schedulers;

/**
 * What {@link MariadbSupport} and {@link PostgresSupport} share: locating a database server once
 * per JVM and caching the outcome, with the steps they have in common (an explicit URL, a server on
 * a local port) and the blocking probe ({@code SELECT 1}, then the server version).
 *
 * <p>Each support class holds one instance, built with its own name (for messages), the product
 * name (which starts every description) and the query that returns the server version.
 */
final class ServerProbe {

  static final Duration TCP_PROBE_TIMEOUT = Duration.ofSeconds(1);
  static final Duration QUERY_PROBE_TIMEOUT = Duration.ofSeconds(30);

  private static final String UNKNOWN_VERSION = "(unknown version)";

  /** A located server: a (non-pooling) factory for it, its R2DBC URL, and where it came from. */
  record Server(ConnectionFactory connectionFactory, String url, String description) {}

  /** The located server, or why there is none. */
  private record Outcome(@Nullable Server server, @Nullable Throwable failure) {}

  private final String owner;
  private final String product;
  private final String versionQuery;
  private final Supplier<Server> locate;

  /** Written once. */
  private volatile @Nullable Outcome outcome;

  /**
   * @param owner the support class's simple name, e.g. {@code MariadbSupport}
   * @param product the product name, e.g. {@code MariaDB}
   * @param versionQuery a query whose first column of its first row is the server version
   * @param locate finds the server (blocking) or throws saying why there is none
   */
  ServerProbe(String owner, String product, String versionQuery, Supplier<Server> locate) {
    this.owner = owner;
    this.product = product;
    this.versionQuery = versionQuery;
    this.locate = locate;
  }

  /**
   * The located server; the first call runs {@code locate} (so it must come from a thread that may
   * block), later calls return the cached outcome or throw its failure again.
   */
  Server located() {
    Outcome o = outcome;
    if (o == null) {
      o = probeOnce();
    }
    if (o.failure() != null) {
      throw new IllegalStateException(o.failure().getMessage(), o.failure());
    }
    if (o.server() == null) {
      throw new IllegalStateException(owner + ": no outcome");
    }
    return o.server();
  }

  private synchronized Outcome probeOnce() {
    Outcome o = outcome;
    if (o != null) {
      return o;
    }
    if (Schedulers.isInNonBlockingThread()) {
      // not cached: a later call from a test thread may still probe
      throw new IllegalStateException(owner + " probes " + product + " with blocking calls; call it"
          + " first from a test thread, not from the Reactor non-blocking thread "
          + Thread.currentThread().getName());
    }
    try {
      o = new Outcome(locate.get(), null);
    } catch (RuntimeException | Error e) {
      o = new Outcome(null, e);
    }
    outcome = o;
    return o;
  }

  /**
   * The server at the R2DBC URL in the environment variable {@code env} or else the system property
   * {@code property}, probed; {@code null} when neither is set. A URL that is set but unusable is
   * an error.
   */
  @Nullable Server fromExplicitUrl(String env, String property) {
    String url = System.getenv(env);
    String source = "environment variable " + env;
    if (url == null || url.isBlank()) {
      url = System.getProperty(property);
      source = "system property " + property;
    }
    if (url == null || url.isBlank()) {
      return null;
    }
    String u = url.strip();
    String masked = mask(u);
    ConnectionFactory factory;
    try {
      factory = ConnectionFactories.get(u);
    } catch (RuntimeException e) {
      throw new IllegalStateException(
          source + " holds an unusable R2DBC URL " + masked + ": " + e, e);
    }
    String version = probeQuery(factory, source + " (" + masked + ")");
    return new Server(factory, u, product + " " + version + " from " + source + " (" + masked + ")");
  }

  /**
   * The server on {@code host:port}, if it accepts a TCP connection within
   * {@link #TCP_PROBE_TIMEOUT} and answers the probe through {@code factory}; otherwise throws
   * {@code noServer} applied to the reason (a phrase such as "nothing accepted a TCP connection on
   * ...").
   */
  Server local(String host, int port, String user, String database, String url,
      Supplier<ConnectionFactory> factory, Function<String, RuntimeException> noServer) {
    String whyNot;
    if (tcpReachable(host, port)) {
      try {
        ConnectionFactory f = factory.get();
        String version = probeQuery(f, url);
        return new Server(f, url, product + " " + version + " on " + host + ":" + port
            + " (user " + user + ", database " + database + ")");
      } catch (RuntimeException e) {
        whyNot = "a server listens on " + host + ":" + port + " but " + e.getMessage();
      }
    } else {
      whyNot = "nothing accepted a TCP connection on " + host + ":" + port
          + " within " + TCP_PROBE_TIMEOUT.toMillis() + " ms";
    }
    throw noServer.apply(whyNot);
  }

  /** Runs SELECT 1 (must return 1) and returns the server version, blocking the calling thread. */
  String probeQuery(ConnectionFactory factory, String what) {
    try {
      String version = Mono.usingWhen(
              Mono.from(factory.create()),
              this::selectOneThenVersion,
              Connection::close)
          .block(QUERY_PROBE_TIMEOUT);
      if (version == null) {
        throw new IllegalStateException("the version query returned nothing");
      }
      return version;
    } catch (RuntimeException e) {
      throw new IllegalStateException("SELECT 1 failed on " + what + ": " + e, e);
    }
  }

  private Mono<String> selectOneThenVersion(Connection connection) {
    // MariaDB returns a Long, PostgreSQL an Integer
    Mono<Number> one = Flux.from(connection.createStatement("SELECT 1").execute())
        .concatMap(result -> result.map((row, metadata) -> row.get(0, Number.class)))
        .single();
    Mono<String> version = Flux.from(connection.createStatement(versionQuery).execute())
        .concatMap(result -> result.map((row, metadata) -> String.valueOf(row.get(0, String.class))))
        .next()
        .onErrorReturn(UNKNOWN_VERSION)
        .defaultIfEmpty(UNKNOWN_VERSION);
    return one.flatMap(value -> value.longValue() == 1L
        ? version
        : Mono.error(new IllegalStateException("SELECT 1 returned " + value)));
  }

  static boolean tcpReachable(String host, int port) {
    try (Socket socket = new Socket()) {
      socket.connect(new InetSocketAddress(host, port), (int) TCP_PROBE_TIMEOUT.toMillis());
      return true;
    } catch (IOException e) {
      return false;
    }
  }

  /**
   * {@code url} through Lagoon ({@code r2dbc[s]:<driver>...} becomes {@code
   * r2dbc[s]:lagoon:<driver>...}), with {@code query} added to the options it may already carry.
   */
  static String lagoonUrl(String url, String query) {
    String lagoon = MariadbSupport.toLagoonUrl(url);
    return lagoon + (lagoon.contains("?") ? "&" : "?") + query;
  }

  /** Hides the password of an R2DBC URL (the part between ':' and '@' of the authority). */
  static String mask(String url) {
    int scheme = url.indexOf("://");
    if (scheme < 0) {
      return url;
    }
    int authorityStart = scheme + 3;
    int at = url.indexOf('@', authorityStart);
    int slash = url.indexOf('/', authorityStart);
    if (at < 0 || (slash >= 0 && slash < at)) {
      return url;
    }
    int colon = url.indexOf(':', authorityStart);
    if (colon < 0 || colon > at) {
      return url;
    }
    return url.substring(0, colon + 1) + "***" + url.substring(at);
  }
}
