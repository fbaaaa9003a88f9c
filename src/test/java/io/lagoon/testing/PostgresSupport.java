package io.lagoon.testing;

import io.r2dbc.postgresql.PostgresqlConnectionConfiguration;
import io.r2dbc.postgresql.PostgresqlConnectionFactory;
import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactories;
import io.r2dbc.spi.ConnectionFactory;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.time.Duration;
import org.testcontainers.DockerClientFactory;
import org.testcontainers.postgresql.PostgreSQLContainer;
import org.testcontainers.utility.DockerImageName;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.core.scheduler.Schedulers;

/**
 * Finds a PostgreSQL server for integration tests, once per JVM, trying in order:
 *
 * <ol>
 *   <li>the R2DBC URL in the environment variable {@value #URL_ENV} (or, as an alias, the system
 *       property {@value #URL_PROPERTY}), opened with {@link ConnectionFactories#get(String)}; if it
 *       is set but unusable, that is an error (no fall-back);
 *   <li>a Testcontainers {@value #IMAGE} container, if Docker is available;
 *   <li>a server on {@code 127.0.0.1:5432} with user {@code postgres} (no password, trust auth) and
 *       database {@code test}, if a TCP connect succeeds within 1 s and {@code SELECT 1} works;
 *   <li>otherwise every call fails with an {@link IllegalStateException} saying how to provide one.
 * </ol>
 *
 * <p>The probe blocks, so the first call must come from a thread that may block (a test thread,
 * not a Reactor non-blocking thread); later calls just return the cached outcome.
 */
public final class PostgresSupport {

    public static final String URL_ENV = "LAGOON_TEST_POSTGRES_URL";
    public static final String URL_PROPERTY = "lagoon.test.postgres.url";
    public static final String IMAGE = "postgres:15-alpine";

    static final String LOCAL_HOST = "127.0.0.1";
    static final int LOCAL_PORT = 5432;
    static final String LOCAL_USER = "postgres";
    static final String LOCAL_DATABASE = "test";

    private static final Duration TCP_PROBE_TIMEOUT = Duration.ofSeconds(1);
    private static final Duration QUERY_PROBE_TIMEOUT = Duration.ofSeconds(30);

    /** Located server, or the failure; written once. */
    private static volatile Outcome outcome;

    private PostgresSupport() {
    }

    /** The connection factory of the located server (not pooled: each create() is a new session). */
    public static ConnectionFactory connectionFactory() {
        return located().connectionFactory;
    }

    /** Human-readable description of where the server came from, with its version; no password. */
    public static String describe() {
        return located().description;
    }

    /** R2DBC URL of the located server, including its password if any (test credentials only). */
    public static String r2dbcUrl() {
        return located().url;
    }

    private static Located located() {
        Outcome o = outcome;
        if (o == null) {
            o = probeOnce();
        }
        if (o.failure != null) {
            throw new IllegalStateException(o.failure.getMessage(), o.failure);
        }
        return o.located;
    }

    private static synchronized Outcome probeOnce() {
        Outcome o = outcome;
        if (o != null) {
            return o;
        }
        if (Schedulers.isInNonBlockingThread()) {
            // do not cache: a later call from a test thread may still probe
            throw new IllegalStateException("PostgresSupport probes PostgreSQL with blocking calls; call it first "
                    + "from a test thread, not from the Reactor non-blocking thread " + Thread.currentThread().getName());
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
        // (a) explicit URL
        String url = System.getenv(URL_ENV);
        String source = "environment variable " + URL_ENV;
        if (url == null || url.isBlank()) {
            url = System.getProperty(URL_PROPERTY);
            source = "system property " + URL_PROPERTY;
        }
        if (url != null && !url.isBlank()) {
            String u = url.strip();
            ConnectionFactory factory;
            try {
                factory = ConnectionFactories.get(u);
            } catch (RuntimeException e) {
                throw new IllegalStateException(source + " holds an unusable R2DBC URL " + mask(u) + ": " + e, e);
            }
            String version = probeQuery(factory, source + " (" + mask(u) + ")");
            return new Located(factory, u, "PostgreSQL " + version + " from " + source + " (" + mask(u) + ")");
        }

        // (b) Testcontainers
        if (dockerAvailable()) {
            return Containers.start();
        }

        // (c) local server
        String localUrl = "r2dbc:postgresql://" + LOCAL_USER + "@" + LOCAL_HOST + ":" + LOCAL_PORT + "/" + LOCAL_DATABASE;
        String whyNotLocal;
        if (tcpReachable(LOCAL_HOST, LOCAL_PORT)) {
            ConnectionFactory factory = new PostgresqlConnectionFactory(PostgresqlConnectionConfiguration.builder()
                    .host(LOCAL_HOST)
                    .port(LOCAL_PORT)
                    .username(LOCAL_USER)
                    .database(LOCAL_DATABASE)
                    .applicationName("lagoon-tests")
                    .connectTimeout(Duration.ofSeconds(5))
                    .build());
            try {
                String version = probeQuery(factory, localUrl);
                return new Located(factory, localUrl, "PostgreSQL " + version + " on " + LOCAL_HOST + ":" + LOCAL_PORT
                        + " (user " + LOCAL_USER + ", database " + LOCAL_DATABASE + ")");
            } catch (RuntimeException e) {
                whyNotLocal = "a server listens on " + LOCAL_HOST + ":" + LOCAL_PORT + " but " + e.getMessage();
            }
        } else {
            whyNotLocal = "nothing accepted a TCP connection on " + LOCAL_HOST + ":" + LOCAL_PORT + " within "
                    + TCP_PROBE_TIMEOUT.toMillis() + " ms";
        }

        // (d) give up, saying how to provide one
        throw new IllegalStateException("No PostgreSQL available for tests. Provide one of:\n"
                + "  1. set " + URL_ENV + "=r2dbc:postgresql://user:pass@host:port/db (or -D" + URL_PROPERTY + "=...),\n"
                + "  2. start Docker, so that Testcontainers can run " + IMAGE + ",\n"
                + "  3. run PostgreSQL on " + LOCAL_HOST + ":" + LOCAL_PORT + " with user " + LOCAL_USER
                + " (trust auth, no password) and database " + LOCAL_DATABASE + ".\n"
                + "Tried: " + URL_ENV + " unset; Docker not available; " + whyNotLocal + ".");
    }

    private static boolean dockerAvailable() {
        try {
            return DockerClientFactory.instance().isDockerAvailable();
        } catch (Throwable t) { // NoClassDefFoundError, IllegalStateException, ...: all mean "no Docker"
            return false;
        }
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
                            PostgresSupport::selectOneThenVersion,
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
        Mono<Integer> one = Flux.from(connection.createStatement("SELECT 1").execute())
                .concatMap(result -> result.map((row, metadata) -> row.get(0, Integer.class)))
                .single();
        Mono<String> version = Flux.from(connection.createStatement("SHOW server_version").execute())
                .concatMap(result -> result.map((row, metadata) -> String.valueOf(row.get(0, String.class))))
                .next()
                .onErrorReturn("(unknown version)")
                .defaultIfEmpty("(unknown version)");
        return one.flatMap(value -> value == 1
                ? version
                : Mono.error(new IllegalStateException("SELECT 1 returned " + value)));
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

    /** Kept apart so that Testcontainers classes are only touched when Docker is there. */
    private static final class Containers {

        static Located start() {
            @SuppressWarnings("resource") // stopped by the shutdown hook (and by Testcontainers' Ryuk)
            PostgreSQLContainer container = new PostgreSQLContainer(DockerImageName.parse(IMAGE));
            try {
                container.start();
            } catch (RuntimeException e) {
                throw new IllegalStateException("Docker is available but the " + IMAGE + " container did not start: " + e, e);
            }
            Runtime.getRuntime().addShutdownHook(new Thread(container::stop, "lagoon-postgres-container-stop"));
            String host = container.getHost();
            int port = container.getMappedPort(PostgreSQLContainer.POSTGRESQL_PORT);
            String user = container.getUsername();
            String password = container.getPassword();
            String database = container.getDatabaseName();
            ConnectionFactory factory = new PostgresqlConnectionFactory(PostgresqlConnectionConfiguration.builder()
                    .host(host)
                    .port(port)
                    .username(user)
                    .password(password)
                    .database(database)
                    .applicationName("lagoon-tests")
                    .connectTimeout(Duration.ofSeconds(10))
                    .build());
            String url = "r2dbc:postgresql://" + user + ":" + password + "@" + host + ":" + port + "/" + database;
            String version = probeQuery(factory, "the " + IMAGE + " container");
            return new Located(factory, url, "PostgreSQL " + version + " in Testcontainers " + IMAGE + " at " + host
                    + ":" + port + " (user " + user + ", database " + database + ")");
        }
    }

    private static final class Located {
        final ConnectionFactory connectionFactory;
        final String url;
        final String description;

        Located(ConnectionFactory connectionFactory, String url, String description) {
            this.connectionFactory = connectionFactory;
            this.url = url;
            this.description = description;
        }
    }

    private static final class Outcome {
        final Located located;
        final Throwable failure;

        Outcome(Located located, Throwable failure) {
            this.located = located;
            this.failure = failure;
        }
    }
}
