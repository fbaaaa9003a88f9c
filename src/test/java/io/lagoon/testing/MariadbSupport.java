package io.lagoon.testing;

import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactories;
import io.r2dbc.spi.ConnectionFactory;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.time.Duration;
import org.jspecify.annotations.Nullable;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.core.scheduler.Schedulers;

/**
 * Finds a MariaDB (or MySQL) server for integration tests, once per JVM, trying in order:
 *
 * <ol>
 *   <li>the R2DBC URL in the environment variable {@value #URL_ENV} (or, as an alias, the system
 *       property {@value #URL_PROPERTY}), e.g. {@code r2dbc:mariadb://user:pass@host:3306/db}; if it
 *       is set but unusable, that is an error (no fall-back);
 *   <li>a server on {@code 127.0.0.1:3306} with user {@code root} (no password) and database
 *       {@code test}, if a TCP connect succeeds within 1 s and {@code SELECT 1} works;
 *   <li>otherwise every call fails with an {@link IllegalStateException} saying how to provide one.
 * </ol>
 *
 * <p>The probe blocks, so the first call must come from a thread that may block (a test thread,
 * not a Reactor non-blocking thread); later calls return the cached outcome.
 */
public final class MariadbSupport {

  public static final String URL_ENV = "LAGOON_TEST_MARIADB_URL";
  public static final String URL_PROPERTY = "lagoon.test.mariadb.url";

  static final String LOCAL_HOST = "127.0.0.1";
  static final int LOCAL_PORT = 3306;
  static final String LOCAL_USER = "root";
  static final String LOCAL_DATABASE = "test";

  private static final Duration TCP_PROBE_TIMEOUT = Duration.ofSeconds(1);
  private static final Duration QUERY_PROBE_TIMEOUT = Duration.ofSeconds(30);

  /** The located server's URL, or why there is none; written once. */
  private static volatile @Nullable Outcome outcome;

  private MariadbSupport() {}

  /** The plain R2DBC URL of the located server (with its password, if any: test credentials). */
  public static String r2dbcUrl() {
    return located().url;
  }

  /** The same server through Lagoon: {@code r2dbc:lagoon:mariadb://...}. */
  public static String lagoonUrl() {
    return toLagoonUrl(r2dbcUrl());
  }

  /** Where the server came from, with its version; no password. */
  public static String describe() {
    return located().description;
  }

  /** Turns {@code r2dbc[s]:<driver>...} into {@code r2dbc[s]:lagoon:<driver>...}. */
  public static String toLagoonUrl(String url) {
    int colon = url.indexOf(':');
    if (colon < 0) {
      throw new IllegalArgumentException("not an R2DBC URL: " + PostgresSupport.mask(url));
    }
    return url.substring(0, colon + 1) + "lagoon:" + url.substring(colon + 1);
  }

  private static Located located() {
    Outcome o = outcome;
    if (o == null) {
      o = probeOnce();
    }
    if (o.failure != null) {
      throw new IllegalStateException(o.failure.getMessage(), o.failure);
    }
    if (o.located == null) {
      throw new IllegalStateException("MariadbSupport: no outcome");
    }
    return o.located;
  }

  private static synchronized Outcome probeOnce() {
    Outcome o = outcome;
    if (o != null) {
      return o;
    }
    if (Schedulers.isInNonBlockingThread()) {
      // not cached: a later call from a test thread may still probe
      throw new IllegalStateException("MariadbSupport probes MariaDB with blocking calls; call it"
          + " first from a test thread, not from the Reactor non-blocking thread "
          + Thread.currentThread().getName());
    }
    try {
      o = new Outcome(locate(), null);
    } catch (RuntimeException | Error e) {
      o = new Outcome(null, e);
    }
    outcome = o;
    return o;
  }

  private static Located locate() {
    // (a) an explicit URL
    String url = System.getenv(URL_ENV);
    String source = "environment variable " + URL_ENV;
    if (url == null || url.isBlank()) {
      url = System.getProperty(URL_PROPERTY);
      source = "system property " + URL_PROPERTY;
    }
    if (url != null && !url.isBlank()) {
      String u = url.strip();
      String masked = PostgresSupport.mask(u);
      ConnectionFactory factory;
      try {
        factory = ConnectionFactories.get(u);
      } catch (RuntimeException e) {
        throw new IllegalStateException(
            source + " holds an unusable R2DBC URL " + masked + ": " + e, e);
      }
      String version = probeQuery(factory, source + " (" + masked + ")");
      return new Located(u, "MariaDB " + version + " from " + source + " (" + masked + ")");
    }

    // (b) a local server
    String localUrl = "r2dbc:mariadb://" + LOCAL_USER + "@" + LOCAL_HOST + ":" + LOCAL_PORT + "/"
        + LOCAL_DATABASE;
    String whyNotLocal;
    if (tcpReachable(LOCAL_HOST, LOCAL_PORT)) {
      try {
        String version = probeQuery(ConnectionFactories.get(localUrl), localUrl);
        return new Located(localUrl, "MariaDB " + version + " on " + LOCAL_HOST + ":" + LOCAL_PORT
            + " (user " + LOCAL_USER + ", database " + LOCAL_DATABASE + ")");
      } catch (RuntimeException e) {
        whyNotLocal = "a server listens on " + LOCAL_HOST + ":" + LOCAL_PORT + " but "
            + e.getMessage();
      }
    } else {
      whyNotLocal = "nothing accepted a TCP connection on " + LOCAL_HOST + ":" + LOCAL_PORT
          + " within " + TCP_PROBE_TIMEOUT.toMillis() + " ms";
    }

    // (c) give up, saying how to provide one
    throw new IllegalStateException("No MariaDB available for tests. Provide one of:\n"
        + "  1. set " + URL_ENV + "=r2dbc:mariadb://user:pass@host:port/db (or -D" + URL_PROPERTY
        + "=...),\n"
        + "  2. run MariaDB on " + LOCAL_HOST + ":" + LOCAL_PORT + " with user " + LOCAL_USER
        + " (no password) and a database " + LOCAL_DATABASE + ".\n"
        + "Tried: " + URL_ENV + " unset; " + whyNotLocal + ".");
  }

  private static boolean tcpReachable(String host, int port) {
    try (Socket socket = new Socket()) {
      socket.connect(new InetSocketAddress(host, port), (int) TCP_PROBE_TIMEOUT.toMillis());
      return true;
    } catch (IOException e) {
      return false;
    }
  }

  /** Runs SELECT 1 (must return 1) and returns the server version, blocking the calling thread. */
  private static String probeQuery(ConnectionFactory factory, String what) {
    try {
      String version = Mono.usingWhen(
              Mono.from(factory.create()),
              MariadbSupport::selectOneThenVersion,
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

  private static Mono<String> selectOneThenVersion(Connection connection) {
    Mono<Long> one = Flux.from(connection.createStatement("SELECT 1").execute())
        .concatMap(result -> result.map((row, metadata) -> row.get(0, Long.class)))
        .single();
    Mono<String> version = Flux.from(connection.createStatement("SELECT VERSION()").execute())
        .concatMap(result -> result.map((row, metadata) -> String.valueOf(row.get(0, String.class))))
        .next()
        .onErrorReturn("(unknown version)")
        .defaultIfEmpty("(unknown version)");
    return one.flatMap(value -> value == 1L
        ? version
        : Mono.error(new IllegalStateException("SELECT 1 returned " + value)));
  }

  private static final class Located {
    final String url;
    final String description;

    Located(String url, String description) {
      this.url = url;
      this.description = description;
    }
  }

  private static final class Outcome {
    final @Nullable Located located;
    final @Nullable Throwable failure;

    Outcome(@Nullable Located located, @Nullable Throwable failure) {
      this.located = located;
      this.failure = failure;
    }
  }
}
