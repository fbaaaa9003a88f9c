package io.lagoon;

import static io.r2dbc.spi.ConnectionFactoryOptions.CONNECT_TIMEOUT;
import static io.r2dbc.spi.ConnectionFactoryOptions.DATABASE;
import static io.r2dbc.spi.ConnectionFactoryOptions.DRIVER;
import static io.r2dbc.spi.ConnectionFactoryOptions.HOST;
import static io.r2dbc.spi.ConnectionFactoryOptions.PASSWORD;
import static io.r2dbc.spi.ConnectionFactoryOptions.PORT;
import static io.r2dbc.spi.ConnectionFactoryOptions.PROTOCOL;
import static io.r2dbc.spi.ConnectionFactoryOptions.SSL;
import static io.r2dbc.spi.ConnectionFactoryOptions.USER;
import static java.util.Map.entry;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.lagoon.internal.PoolConfig;
import io.lagoon.internal.PoolOptions;
import io.lagoon.testing.PostgresSupport;
import io.lagoon.testing.RecordingDriver;
import io.lagoon.testing.RecordingDriver.RecordingFactory;
import io.r2dbc.postgresql.PostgresqlConnectionFactory;
import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactories;
import io.r2dbc.spi.ConnectionFactory;
import io.r2dbc.spi.ConnectionFactoryOptions;
import io.r2dbc.spi.Option;
import io.r2dbc.spi.ValidationDepth;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.Function;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;
import org.reactivestreams.Publisher;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

class LagoonConnectionFactoryProviderTest {

  /** A password that must never show up in a message or a toString. */
  private static final String SECRET = "Pa55-w0rd-s3cret";

  /** A Lagoon URL over the test-only recording driver, with credentials. */
  private static final String RECORDING =
      "r2dbc:lagoon:recording://app:" + SECRET + "@db.example:1234/shop";

  private static final String DURATION_FORMS = "ISO-8601 like PT30S or PT5M, or a whole number"
      + " with a unit ms, s, m, h or d like 500ms, 30s, 5m, 1h or 1d";

  private static final String URL_FORM = "r2dbc:lagoon:<driver>://... or"
      + " r2dbc:lagoon:<driver>:<protocol>://..., e.g. r2dbc:lagoon:postgresql://localhost/mydb";

  private static ConnectionPoolBuilder builder(String url) {
    return LagoonConnectionFactoryProvider.builder(ConnectionFactoryOptions.parse(url));
  }

  /** The configuration a recording-driver URL with this query gives. */
  private static PoolConfig config(String query) {
    return builder(RECORDING + "?" + query).config();
  }

  private static Flux<String> appNameAndTwo(Connection c) {
    return Flux.from(c.createStatement(
            "SELECT current_setting('application_name') AS app, 1 + 1 AS two").execute())
        .concatMap(r -> r.map((row, meta) -> row.get("app", String.class) + "/"
            + row.get("two", Integer.class)));
  }

  private static void closeAndCheck(ConnectionPool pool) {
    pool.close().block(Duration.ofSeconds(30));
    assertThat(pool.isDisposed()).isTrue();
    assertThat(pool.stats().allocated()).as("%s", pool.stats()).isZero();
  }

  // ---------------------------------------------------------------------------------------------
  // Discovery
  // ---------------------------------------------------------------------------------------------

  @Test
  void aLagoonPostgresqlUrlGivesAPoolThatRunsQueries() {
    String url = PostgresSupport.lagoonUrl(
        "maxSize=3&initialSize=1&poolName=pg-url&applicationName=lagoon-url-test");

    ConnectionFactory factory = ConnectionFactories.get(url);

    assertThat(factory).isInstanceOf(ConnectionPool.class);
    ConnectionPool pool = (ConnectionPool) factory;
    try {
      assertThat(pool.name()).isEqualTo("pg-url");
      assertThat(pool.stats().maxSize()).isEqualTo(3);
      assertThat(pool.unwrap()).isInstanceOf(PostgresqlConnectionFactory.class);
      assertThat(pool.getMetadata().getName()).isEqualTo("PostgreSQL");
      // applicationName is the driver's option: it went through to the PostgreSQL session
      assertThat(pool.withConnection(LagoonConnectionFactoryProviderTest::appNameAndTwo)
          .single().block(Duration.ofSeconds(30)))
          .isEqualTo("lagoon-url-test/2");
      assertThat(pool.stats().acquired()).isZero();
    } finally {
      closeAndCheck(pool);
    }
  }

  @Test
  void programmaticOptionsWithDriverLagoonAndProtocolPostgresql() {
    ConnectionFactoryOptions postgres = ConnectionFactoryOptions.parse(PostgresSupport.r2dbcUrl());
    Object postgresDriver = postgres.getRequiredValue(DRIVER);
    ConnectionFactoryOptions options = postgres.mutate()
        .option(DRIVER, "lagoon")
        .option(PROTOCOL, String.valueOf(postgresDriver))
        .option(Option.valueOf("maxSize"), 2)
        .option(Option.valueOf("initialSize"), 0)
        .option(Option.valueOf("maxAcquireTime"), Duration.ofSeconds(20))
        .option(Option.valueOf("poolName"), "pg-options")
        .option(Option.valueOf("applicationName"), "lagoon-options-test")
        .build();

    ConnectionFactory factory = ConnectionFactories.get(options);

    assertThat(factory).isInstanceOf(ConnectionPool.class);
    ConnectionPool pool = (ConnectionPool) factory;
    try {
      assertThat(pool.name()).isEqualTo("pg-options");
      assertThat(pool.stats().maxSize()).isEqualTo(2);
      assertThat(pool.withConnection(LagoonConnectionFactoryProviderTest::appNameAndTwo)
          .single().block(Duration.ofSeconds(30)))
          .isEqualTo("lagoon-options-test/2");
    } finally {
      closeAndCheck(pool);
    }
  }

  @Test
  void theProviderAnswersForDriverLagoonOnly() {
    LagoonConnectionFactoryProvider provider = new LagoonConnectionFactoryProvider();
    assertThat(provider.getDriver()).isEqualTo("lagoon");
    assertThat(provider.supports(ConnectionFactoryOptions.parse("r2dbc:lagoon:postgresql://h")))
        .isTrue();
    assertThat(provider.supports(ConnectionFactoryOptions.parse("r2dbc:postgresql://h")))
        .isFalse();
    assertThat(provider.supports(ConnectionFactoryOptions.builder().build())).isFalse();
  }

  @Test
  void theDriverAndProtocolAfterLagoonSelectTheDelegate() {
    RecordingFactory plain = (RecordingFactory) builder(RECORDING).config().factory();
    assertThat(plain.options().getValue(DRIVER)).isEqualTo("recording");
    assertThat(plain.options().hasOption(PROTOCOL)).isFalse();

    RecordingFactory withProtocol = (RecordingFactory) builder(
        "r2dbc:lagoon:recording:tcp:v2://h/db").config().factory();
    assertThat(withProtocol.options().getValue(DRIVER)).isEqualTo("recording");
    assertThat(withProtocol.options().getValue(PROTOCOL)).isEqualTo("tcp:v2");

    ConnectionFactoryOptions programmatic = ConnectionFactoryOptions.builder()
        .option(DRIVER, "lagoon").option(PROTOCOL, "recording:pipes").option(HOST, "h").build();
    RecordingFactory fromOptions = (RecordingFactory) LagoonConnectionFactoryProvider
        .builder(programmatic).config().factory();
    assertThat(fromOptions.options().getValue(DRIVER)).isEqualTo("recording");
    assertThat(fromOptions.options().getValue(PROTOCOL)).isEqualTo("pipes");
  }

  // ---------------------------------------------------------------------------------------------
  // Options
  // ---------------------------------------------------------------------------------------------

  @Test
  void everyR2dbcPoolOptionIsReadUnderItsNameWithItsValue() {
    String url = RECORDING + "?initialSize=2&maxSize=7&minIdle=1&maxIdleTime=PT30M"
        + "&maxLifeTime=1h&maxAcquireTime=PT5S&maxCreateConnectionTime=3s"
        + "&maxValidationTime=500ms&acquireRetry=2&validationQuery=SELECT%201"
        + "&validationDepth=remote&backgroundEvictionInterval=PT2M&poolName=orders"
        + "&registerJmx=true";

    Map<String, Object> values = PoolOptions.read(ConnectionFactoryOptions.parse(url)).asMap();

    assertThat(values).isEqualTo(Map.ofEntries(
        entry("initialSize", 2),
        entry("maxSize", 7),
        entry("minIdle", 1),
        entry("maxIdleTime", Duration.ofMinutes(30)),
        entry("maxLifeTime", Duration.ofHours(1)),
        entry("maxAcquireTime", Duration.ofSeconds(5)),
        entry("maxCreateConnectionTime", Duration.ofSeconds(3)),
        entry("maxValidationTime", Duration.ofMillis(500)),
        entry("acquireRetry", 2),
        entry("validationQuery", "SELECT 1"),
        entry("validationDepth", ValidationDepth.REMOTE),
        entry("backgroundEvictionInterval", Duration.ofMinutes(2)),
        entry("poolName", "orders"),
        entry("registerJmx", true)));
  }

  @Test
  void optionsTheBuilderTakesReachThePoolConfiguration() {
    PoolConfig c = config("initialSize=2&maxSize=7&minIdle=1&maxIdleTime=PT30M&maxLifeTime=1h"
        + "&maxAcquireTime=PT5S&maxCreateConnectionTime=3s&maxValidationTime=500ms"
        + "&acquireRetry=2&validationQuery=SELECT%201&validationDepth=remote"
        + "&backgroundEvictionInterval=PT2M&poolName=orders&maxPendingAcquires=50"
        + "&maxConcurrentCreates=4&maxCloseTime=1500ms&keepaliveInterval=45s"
        + "&validationSkipWindow=250ms&leakDetectionThreshold=20s");

    assertThat(c.initialSize()).isEqualTo(2);
    assertThat(c.maxSize()).isEqualTo(7);
    assertThat(c.minIdle()).isEqualTo(1);
    assertThat(c.maxAcquireTime()).isEqualTo(Duration.ofSeconds(5));
    assertThat(c.maxCreateConnectionTime()).isEqualTo(Duration.ofSeconds(3));
    assertThat(c.poolName()).isEqualTo("orders");
    assertThat(c.maxPendingAcquires()).isEqualTo(50);
    assertThat(c.maxConcurrentCreates()).isEqualTo(4);
    assertThat(c.maxCloseTime()).isEqualTo(Duration.ofMillis(1500));
    assertThat(c.maxIdleTime()).isEqualTo(Duration.ofMinutes(30));
    assertThat(c.maxLifeTime()).isEqualTo(Duration.ofHours(1));
    assertThat(c.maxValidationTime()).isEqualTo(Duration.ofMillis(500));
    assertThat(c.acquireRetry()).isEqualTo(2);
    assertThat(c.validationQuery()).isEqualTo("SELECT 1");
    assertThat(c.validationDepth()).isEqualTo(ValidationDepth.REMOTE);
    assertThat(c.backgroundEvictionInterval()).isEqualTo(Duration.ofMinutes(2));
    assertThat(c.keepaliveInterval()).isEqualTo(Duration.ofSeconds(45));
    assertThat(c.validationSkipWindow()).isEqualTo(Duration.ofMillis(250));
    assertThat(c.leakDetectionThreshold()).isEqualTo(Duration.ofSeconds(20));
  }

  @Test
  void absentOptionsKeepTheBuilderDefaults() {
    PoolConfig c = builder(RECORDING).config();
    assertThat(c.maxSize()).isEqualTo(ConnectionPoolBuilder.DEFAULT_MAX_SIZE);
    assertThat(c.maxAcquireTime()).isEqualTo(ConnectionPoolBuilder.DEFAULT_MAX_ACQUIRE_TIME);
    assertThat(c.poolName()).startsWith("lagoon-");
  }

  @Test
  void theBuiltPoolHasTheSizeOfTheUrl() {
    ConnectionPool pool = (ConnectionPool) ConnectionFactories.get(
        RECORDING + "?maxSize=4&initialSize=0&poolName=recorded");
    try {
      assertThat(pool.stats().maxSize()).isEqualTo(4);
      assertThat(pool.name()).isEqualTo("recorded");
      assertThat(pool.unwrap()).isInstanceOf(RecordingFactory.class);
      assertThat(pool.withConnection(c -> Mono.just("ok")).single().block(Duration.ofSeconds(10)))
          .isEqualTo("ok");
    } finally {
      closeAndCheck(pool);
    }
  }

  @Test
  void typedValuesAreTakenAsTheyAre() {
    Function<Connection, Publisher<Void>> hook = c -> Mono.empty();
    ConnectionFactoryOptions options = ConnectionFactoryOptions.builder()
        .option(DRIVER, "lagoon")
        .option(PROTOCOL, "recording")
        .option(Option.valueOf("maxSize"), 4)
        .option(Option.valueOf("initialSize"), 1L)
        .option(Option.valueOf("maxAcquireTime"), Duration.ofSeconds(7))
        .option(Option.valueOf("maxCloseTime"), " 2s ")
        .option(Option.valueOf("registerJmx"), Boolean.TRUE)
        .option(Option.valueOf("validationDepth"), ValidationDepth.LOCAL)
        .option(Option.valueOf("postAllocate"), hook)
        .option(Option.valueOf("preRelease"), hook)
        .build();

    Map<String, Object> values = PoolOptions.read(options).asMap();
    assertThat(values).containsEntry("maxSize", 4)
        .containsEntry("initialSize", 1)
        .containsEntry("maxAcquireTime", Duration.ofSeconds(7))
        .containsEntry("maxCloseTime", Duration.ofSeconds(2))
        .containsEntry("registerJmx", true)
        .containsEntry("validationDepth", ValidationDepth.LOCAL);
    assertThat(values.get("postAllocate")).isSameAs(hook);
    assertThat(values.get("preRelease")).isSameAs(hook);

    PoolConfig c = LagoonConnectionFactoryProvider.builder(options).config();
    assertThat(c.registerJmx()).isTrue();
    assertThat(c.maxSize()).isEqualTo(4);
    assertThat(c.initialSize()).isEqualTo(1);
    assertThat(c.maxAcquireTime()).isEqualTo(Duration.ofSeconds(7));
    assertThat(c.maxCloseTime()).isEqualTo(Duration.ofSeconds(2));
    assertThat(c.validationDepth()).isEqualTo(ValidationDepth.LOCAL);
    assertThat(c.postAllocate()).isSameAs(hook);
    assertThat(c.preRelease()).isSameAs(hook);
  }

  @ParameterizedTest
  @CsvSource({
      "PT30S, PT30S", "pt30s, PT30S", "Pt5m, PT5M", "P1D, PT24H", "PT0.25S, PT0.25S",
      "P1DT2H, PT26H", "500ms, PT0.5S", "500MS, PT0.5S", "30s, PT30S", "30S, PT30S",
      "2m, PT2M", "1h, PT1H", "1d, PT24H", "+45s, PT45S"})
  void durationsAreIsoOrANumberWithAUnit(String text, String expected) {
    assertThat(config("maxAcquireTime=" + text.replace("+", "%2B")).maxAcquireTime())
        .isEqualTo(Duration.parse(expected));
  }

  @Test
  void driverOptionsPassThroughAndPoolOptionsDoNot() {
    String url = "r2dbcs:lagoon:recording://app:" + SECRET + "@db.example:1234/shop"
        + "?maxSize=3&initialSize=1&maxAcquireTime=5s&poolName=p&maxCloseTime=2s"
        + "&sslMode=require&applicationName=billing&connectTimeout=PT3S";

    RecordingFactory driver = (RecordingFactory) builder(url).config().factory();

    assertThat(driver.options()).isEqualTo(ConnectionFactoryOptions.builder()
        .option(DRIVER, "recording")
        .option(SSL, true)
        .option(HOST, "db.example")
        .option(PORT, 1234)
        .option(USER, "app")
        .option(PASSWORD, SECRET)
        .option(DATABASE, "shop")
        .option(Option.valueOf("sslMode"), "require")
        .option(Option.valueOf("applicationName"), "billing")
        .option(Option.<String>valueOf(CONNECT_TIMEOUT.name()), "PT3S") // a URL gives text
        .build());
    List<String> names = new ArrayList<>();
    ConnectionFactoryOptions.builder().from(driver.options(), o -> names.add(o.name()));
    assertThat(names).noneMatch(PoolOptions::isPoolOption);
  }

  @Test
  void everyOptionOfTheTableIsAPoolOption() {
    assertThat(PoolOptions.names()).containsExactly(
        "initialSize", "maxSize", "minIdle", "maxIdleTime", "maxLifeTime", "maxAcquireTime",
        "maxCreateConnectionTime", "maxValidationTime", "acquireRetry", "validationQuery",
        "validationDepth", "backgroundEvictionInterval", "poolName", "registerJmx",
        "postAllocate", "preRelease", "maxPendingAcquires", "maxConcurrentCreates", "maxCloseTime",
        "keepaliveInterval", "validationSkipWindow", "sessionReset", "leakDetectionThreshold");
    assertThat(PoolOptions.isPoolOption("sslMode")).isFalse();
    assertThat(PoolOptions.isPoolOption("maxsize")).isFalse(); // names are case-sensitive
  }

  @Test
  void registerJmxPublishesThePoolAndCloseWithdrawsIt() throws Exception {
    var server = java.lang.management.ManagementFactory.getPlatformMBeanServer();
    var name = new javax.management.ObjectName("io.lagoon:type=ConnectionPool,name=\"jmx-url\"");
    ConnectionPool pool = (ConnectionPool) ConnectionFactories.get(
        RECORDING + "?registerJmx=true&poolName=jmx-url&initialSize=0&maxSize=3");
    try {
      assertThat(server.isRegistered(name)).isTrue();
      assertThat(server.getAttribute(name, "MaxSize")).isEqualTo(3);
      assertThat(server.getAttribute(name, "PendingAcquireSize")).isEqualTo(0);
      assertThat(server.getAttribute(name, "LeakCount")).isEqualTo(0L);
      assertThatThrownBy(() -> ConnectionFactories.get(
              RECORDING + "?registerJmx=true&poolName=jmx-url&initialSize=0"))
          .isInstanceOf(IllegalArgumentException.class)
          .hasMessageStartingWith("registerJmx: cannot register pool 'jmx-url'");
    } finally {
      pool.close().block(Duration.ofSeconds(5));
    }
    assertThat(server.isRegistered(name)).isFalse();
    ConnectionPool quiet = (ConnectionPool) ConnectionFactories.get(
        RECORDING + "?registerJmx=false&poolName=jmx-url&initialSize=0");
    assertThat(server.isRegistered(name)).isFalse();
    quiet.dispose();
  }

  // ---------------------------------------------------------------------------------------------
  // r2dbc-pool's values: negative means no limit, zero where it means something, defaults adapt
  // ---------------------------------------------------------------------------------------------

  @Test
  void negativeDurationsMeanNoLimitAsInR2dbcPool() {
    PoolConfig c = config("maxAcquireTime=-PT1S&maxLifeTime=PT-1S&maxIdleTime=-1s"
        + "&maxCreateConnectionTime=-1ms&maxValidationTime=-PT0.5S");
    assertThat(List.of(c.maxAcquireTime(), c.maxLifeTime(), c.maxIdleTime(),
        c.maxCreateConnectionTime(), c.maxValidationTime()))
        .containsOnly(ConnectionPoolBuilder.NO_LIMIT);
    assertThat(c.keepaliveInterval()).isEqualTo(Duration.ofMinutes(2));
  }

  @Test
  void aBareZeroIsReadWhereZeroMeansSomething() {
    PoolConfig c = config("keepaliveInterval=0&validationSkipWindow=0&backgroundEvictionInterval=0");
    assertThat(c.keepaliveInterval()).as("disabled").isZero();
    assertThat(c.validationSkipWindow()).as("validate every borrow").isZero();
    assertThat(c.backgroundEvictionInterval()).as("the default").isEqualTo(Duration.ofSeconds(30));
    assertThat(config("backgroundEvictionInterval=-PT1M").backgroundEvictionInterval())
        .isEqualTo(Duration.ofSeconds(30));
  }

  @Test
  void aShortLifetimeAloneIsAcceptedAndTheKeepaliveDefaultFollowsIt() {
    PoolConfig c = config("maxLifeTime=PT1M");
    assertThat(c.maxLifeTime()).isEqualTo(Duration.ofMinutes(1));
    assertThat(c.keepaliveInterval()).isEqualTo(Duration.ofSeconds(30));
    assertThat(config("maxIdleTime=PT1M").keepaliveInterval()).isEqualTo(Duration.ofSeconds(30));
    assertThat(config("minIdle=12").maxSize()).isEqualTo(12);
    assertThat(config("initialSize=15").maxSize()).isEqualTo(15);
    rejectsOption("maxLifeTime=PT1M&keepaliveInterval=PT1M", "keepaliveInterval (PT1M) must be <"
        + " maxLifeTime (PT1M), or zero to disable keepalive");
    rejectsOption("maxSize=8&minIdle=9", "minIdle (9) must be <= maxSize (8)");
  }

  // ---------------------------------------------------------------------------------------------
  // Lookalikes: options that resemble a pool option are refused, driver options pass
  // ---------------------------------------------------------------------------------------------

  private static String lookalike(String name, String meant, String why, String driver) {
    return "unknown option '" + name + "' in r2dbc:lagoon:" + driver + ": did you mean '" + meant
        + "'? It is not a pool option" + why + " and the " + driver
        + " driver does not declare it";
  }

  @Test
  void misspeltPoolOptionsAreRefusedInsteadOfSilentlyIgnored() {
    String cased = " (pool option names are case-sensitive)";
    String camel = " (pool option names are camelCase, as in r2dbc-pool)";
    rejectsOption("maxsize=5", lookalike("maxsize", "maxSize", cased, "recording"));
    rejectsOption("MaxSize=5", lookalike("MaxSize", "maxSize", cased, "recording"));
    rejectsOption("max_size=5", lookalike("max_size", "maxSize", camel, "recording"));
    rejectsOption("maxSzie=7", lookalike("maxSzie", "maxSize", "", "recording"));
    rejectsOption("max-idle-time=PT1M", lookalike("max-idle-time", "maxIdleTime", camel,
        "recording"));
    rejectsOption("minIdel=2", lookalike("minIdel", "minIdle", "", "recording"));
    rejectsOption("maxLifetime=PT1M", lookalike("maxLifetime", "maxLifeTime", cased, "recording"));
    rejectsOption("validationQuerry=SELECT%201", lookalike("validationQuerry", "validationQuery",
        "", "recording"));
    rejectsOption("keepAliveInterval=0", lookalike("keepAliveInterval", "keepaliveInterval", cased,
        "recording"));
    rejectsOption("poolname=x", lookalike("poolname", "poolName", cased, "recording"));
    rejectsOption("leakDetectionTreshold=10s", lookalike("leakDetectionTreshold",
        "leakDetectionThreshold", "", "recording"));
    rejectsOption("leak-detection-threshold=10s", lookalike("leak-detection-threshold",
        "leakDetectionThreshold", camel, "recording"));
  }

  @Test
  void aLookalikeIsRefusedForARealDriverAndThePasswordNeverShows() {
    rejects("r2dbc:lagoon:postgresql://app:" + SECRET + "@127.0.0.1:1/shop?maxSzie=7",
        lookalike("maxSzie", "maxSize", "", "postgresql"));
    // the value of an unknown option may be a password: it is never echoed
    rejects("r2dbc:lagoon:postgresql://app@127.0.0.1:1/shop?max_size=" + SECRET,
        lookalike("max_size", "maxSize", " (pool option names are camelCase, as in r2dbc-pool)",
            "postgresql"));
    assertThatThrownBy(() -> LagoonConnectionFactoryProvider.builder(ConnectionFactoryOptions
        .builder().option(DRIVER, "lagoon").option(PROTOCOL, "mariadb")
        .option(Option.sensitiveValueOf("initial_size"), SECRET).build()))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessage(lookalike("initial_size", "initialSize",
            " (pool option names are camelCase, as in r2dbc-pool)", "mariadb"));
  }

  @Test
  void aLookalikeThatTheDriverDeclaresGoesToTheDriver() {
    RecordingFactory driver = (RecordingFactory) config("maxIdle=3&minIdle=1").factory();
    assertThat(driver.options().getValue(RecordingDriver.MAX_IDLE)).isEqualTo("3");
    assertThat(driver.options().hasOption(Option.valueOf("minIdle"))).isFalse();
    // the same name to a driver that does not declare it
    rejects("r2dbc:lagoon:postgresql://app@127.0.0.1:1/shop?maxIdle=3",
        lookalike("maxIdle", "minIdle", "", "postgresql"));
  }

  /** The names of the public static Option constants of a driver's provider. */
  private static List<String> declaredOptionNames(Class<?> provider) throws Exception {
    List<String> names = new ArrayList<>();
    for (java.lang.reflect.Field f : provider.getDeclaredFields()) {
      if (java.lang.reflect.Modifier.isStatic(f.getModifiers())
          && java.lang.reflect.Modifier.isPublic(f.getModifiers())
          && Option.class.isAssignableFrom(f.getType())) {
        names.add(((Option<?>) f.get(null)).name());
      }
    }
    return names;
  }

  @ParameterizedTest
  @ValueSource(classes = {io.r2dbc.postgresql.PostgresqlConnectionFactoryProvider.class,
      org.mariadb.r2dbc.MariadbConnectionFactoryProvider.class})
  void everyOptionOfTheRealDriversLooksLikeNoPoolOptionAndPassesThrough(Class<?> provider)
      throws Exception {
    List<String> names = declaredOptionNames(provider);
    assertThat(names).as("options found").hasSizeGreaterThan(20)
        .contains("sslMode", "tcpKeepAlive");
    assertThat(names).allSatisfy(n -> assertThat(PoolOptions.lookalike(n)).as(n).isNull());
    // through a driver that declares none of them, so only their spelling lets them through
    ConnectionFactoryOptions.Builder options = ConnectionFactoryOptions.builder()
        .option(DRIVER, "lagoon").option(PROTOCOL, "recording")
        .option(Option.valueOf("maxSize"), "4");
    names.forEach(n -> options.option(Option.valueOf(n), "v-" + n));
    RecordingFactory driver = (RecordingFactory) LagoonConnectionFactoryProvider
        .builder(options.build()).config().factory();
    for (String n : names) {
      assertThat(driver.options().getValue(Option.valueOf(n))).as(n).isEqualTo("v-" + n);
    }
  }

  @Test
  void postgresqlDriverOptionsReachTheSession() {
    String app = "lagoon-options-passthrough-" + ProcessHandle.current().pid();
    String url = PostgresSupport.lagoonUrl("maxSize=2&initialSize=0&maxLifeTime=PT1M"
        + "&applicationName=" + app
        + "&statementTimeout=PT7S&lockWaitTimeout=PT3S&tcpKeepAlive=true&fetchSize=50"
        + "&preparedStatementCacheQueries=8");
    ConnectionPool pool = (ConnectionPool) ConnectionFactories.get(url);
    try {
      String settings = pool.withConnection(c -> Flux.from(c.createStatement(
              "SELECT current_setting('application_name') || '/'"
                  + " || current_setting('statement_timeout') || '/'"
                  + " || current_setting('lock_timeout') AS s").execute())
          .concatMap(r -> r.map((row, meta) -> row.get("s", String.class))))
          .single().block(Duration.ofSeconds(30));
      assertThat(settings).isEqualTo(app + "/7s/3s");
    } finally {
      closeAndCheck(pool);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Bad input: one clear IllegalArgumentException, naming the option, echoing only its value
  // ---------------------------------------------------------------------------------------------

  private static void rejects(String url, String message) {
    assertThatThrownBy(() -> ConnectionFactories.get(url))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessage(message)
        .satisfies(e -> assertThat(e.getMessage()).doesNotContain(SECRET));
  }

  private static void rejectsOption(String query, String message) {
    rejects(RECORDING + "?" + query, message);
  }

  @Test
  void anUnknownDriverAfterLagoonIsNamed() {
    rejects("r2dbc:lagoon:nosuchdriver://x", "No R2DBC driver 'nosuchdriver' to pool: the driver"
        + " after 'lagoon:' must be on the class path (" + URL_FORM + "); available drivers:"
        + " mariadb, postgresql, recording");
    rejects("r2dbc:lagoon:nosuchdriver:tcp://u:" + SECRET + "@h/db", "No R2DBC driver"
        + " 'nosuchdriver' to pool: the driver after 'lagoon:' must be on the class path ("
        + URL_FORM + "); available drivers: mariadb, postgresql, recording");
  }

  @Test
  void aMissingDriverAfterLagoonIsExplained() {
    String message = "No driver to pool: a Lagoon URL names the database's driver after"
        + " 'lagoon:': " + URL_FORM + " (programmatically: option driver=lagoon,"
        + " protocol=<driver>)";
    rejects("r2dbc:lagoon://host/db", message);
    rejects("r2dbc:lagoon://u:" + SECRET + "@host:5432/db?maxSize=3", message);
    assertThatThrownBy(() -> ConnectionFactories.get(ConnectionFactoryOptions.builder()
        .option(DRIVER, "lagoon").option(HOST, "h").build()))
        .isInstanceOf(IllegalArgumentException.class).hasMessage(message);
    assertThatThrownBy(() -> ConnectionFactories.get(ConnectionFactoryOptions.builder()
        .option(DRIVER, "lagoon").option(PROTOCOL, ":tcp").build()))
        .isInstanceOf(IllegalArgumentException.class).hasMessage(message);
  }

  @Test
  void aPoolInAPoolIsRefused() {
    rejects("r2dbc:lagoon:pool:postgresql://u:" + SECRET + "@h/db", "r2dbc:lagoon:pool:... would"
        + " put a pool in a pool: 'pool' is a connection pool, not a database driver; name the"
        + " database's driver after 'lagoon:': " + URL_FORM);
    rejects("r2dbc:lagoon:lagoon:postgresql://h/db", "r2dbc:lagoon:lagoon:... would put a pool in"
        + " a pool: 'lagoon' is a connection pool, not a database driver; name the database's"
        + " driver after 'lagoon:': " + URL_FORM);
  }

  @Test
  void malformedNumbersAreRefused() {
    rejectsOption("maxSize=ten", "maxSize ('ten') must be an integer");
    rejectsOption("initialSize=1.5", "initialSize ('1.5') must be an integer");
    rejectsOption("maxSize=99999999999", "maxSize ('99999999999') is out of range for an int");
  }

  @Test
  void malformedDurationsAreRefusedWithTheAcceptedForms() {
    rejectsOption("maxIdleTime=abc", "maxIdleTime ('abc') must be a duration: " + DURATION_FORMS);
    rejectsOption("maxAcquireTime=30", "maxAcquireTime ('30') needs a unit: use " + DURATION_FORMS);
    rejectsOption("maxAcquireTime=-1", "maxAcquireTime ('-1') needs a unit: use " + DURATION_FORMS
        + " (any negative duration, such as -1s or -PT1S, means no limit)");
    rejectsOption("maxAcquireTime=5sec", "maxAcquireTime ('5sec') must be a duration: "
        + DURATION_FORMS);
    rejectsOption("maxAcquireTime=1.5s", "maxAcquireTime ('1.5s') must be a duration: "
        + DURATION_FORMS);
    rejectsOption("maxCloseTime=P999999999999999D",
        "maxCloseTime ('P999999999999999D') is out of range for a duration");
    rejectsOption("maxCloseTime=999999999999999d",
        "maxCloseTime ('999999999999999d') is out of range for a duration");
    rejectsOption("leakDetectionThreshold=soon", "leakDetectionThreshold ('soon') must be a"
        + " duration: " + DURATION_FORMS);
    rejectsOption("leakDetectionThreshold=10", "leakDetectionThreshold ('10') needs a unit: use "
        + DURATION_FORMS);
  }

  @Test
  void outOfRangeValuesBringTheBuildersMessage() {
    rejectsOption("maxSize=-1", "maxSize (-1) must be >= 1: r2dbc-pool's -1 (unbounded) has no"
        + " equivalent, a Lagoon pool is always bounded");
    rejectsOption("maxSize=0", "maxSize (0) must be >= 1");
    rejectsOption("initialSize=-2", "initialSize (-2) must be >= 0");
    rejectsOption("maxPendingAcquires=0", "maxPendingAcquires (0) must be >= 1");
    rejectsOption("maxAcquireTime=0", "maxAcquireTime (PT0S) must be positive, or negative for no"
        + " limit");
    rejectsOption("maxCloseTime=PT0S", "maxCloseTime (PT0S) must be positive");
    rejectsOption("maxCloseTime=0", "maxCloseTime (PT0S) must be positive");
    rejectsOption("maxCloseTime=-1s", "maxCloseTime (PT-1S) must be positive");
    rejectsOption("poolName=%20", "poolName (' ') must not be blank");
    rejectsOption("maxSize=5&initialSize=6", "initialSize (6) must be <= maxSize (5)");
    rejectsOption("maxLifeTime=PT0S", "maxLifeTime (PT0S) must be positive, or negative for no"
        + " limit");
    rejectsOption("acquireRetry=-1", "acquireRetry (-1) must be >= 0");
    rejectsOption("validationQuery=%20", "validationQuery (' ') must not be blank");
    rejectsOption("keepaliveInterval=2h&maxLifeTime=1h",
        "keepaliveInterval (PT2H) must be < maxLifeTime (PT1H), or zero to disable keepalive");
    rejectsOption("leakDetectionThreshold=-1s", "leakDetectionThreshold (PT-1S) must not be"
        + " negative (zero disables leak detection)");
  }

  @Test
  void otherMalformedValuesAreRefused() {
    rejectsOption("validationDepth=deep",
        "validationDepth ('deep') must be one of LOCAL, REMOTE (in any case)");
    rejectsOption("registerJmx=yes", "registerJmx ('yes') must be true or false");
    rejectsOption("postAllocate=doSomething", "postAllocate ('doSomething') cannot be set in a"
        + " URL: set it programmatically to a Function<Connection, Publisher<Void>>");
    rejectsOption("preRelease=x", "preRelease ('x') cannot be set in a URL: set it"
        + " programmatically to a Function<Connection, Publisher<Void>>");
    assertThatThrownBy(() -> ConnectionFactories.get(ConnectionFactoryOptions.builder()
        .option(DRIVER, "lagoon").option(PROTOCOL, "recording")
        .option(Option.valueOf("maxSize"), Duration.ofSeconds(1)).build()))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessage("maxSize (PT1S) must be an Integer or a String, not a java.time.Duration");
    assertThatThrownBy(() -> ConnectionFactories.get(ConnectionFactoryOptions.builder()
        .option(DRIVER, "lagoon").option(PROTOCOL, "recording")
        .option(Option.valueOf("maxIdleTime"), 30).build()))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessage("maxIdleTime (30) must be a Duration or a String, not a java.lang.Integer");
  }

  // ---------------------------------------------------------------------------------------------
  // Secrets
  // ---------------------------------------------------------------------------------------------

  @Test
  void thePasswordShowsNowhere() {
    String url = "r2dbc:lagoon:postgresql://app:" + SECRET + "@127.0.0.1:1/shop?initialSize=0";
    ConnectionPool pool = (ConnectionPool) ConnectionFactories.get(url);
    try {
      assertThat(pool.toString()).doesNotContain(SECRET);
      assertThat(pool.stats().toString()).doesNotContain(SECRET);
      assertThat(builder(url).config().toString()).doesNotContain(SECRET);
      assertThat(builder(RECORDING).config().toString()).doesNotContain(SECRET);
      assertThat(PoolOptions.read(ConnectionFactoryOptions.parse(url)).toString())
          .doesNotContain(SECRET);
    } finally {
      closeAndCheck(pool);
    }
    // and no message of the bad-input cases above echoes it: see rejects(...)
  }

  @Test
  void aPasswordNeverAppearsInThePoolsMessagesOrToString() {
    String password = "S3cr3t-pw";
    String url = "r2dbc:lagoon:postgresql://app:" + password + "@127.0.0.1:1/shop"
        + "?initialSize=0&maxAcquireTime=PT1S&connectTimeout=PT0.5S&poolName=secret-check";
    assertThat(LagoonConnectionFactoryProvider.builder(ConnectionFactoryOptions.parse(url))
        .config().toString()).doesNotContain(password).contains("maxAcquireTime=PT1S");
    ConnectionPool pool = (ConnectionPool) ConnectionFactories.get(url);
    try {
      Throwable error = pool.create().then(Mono.<Throwable>empty()).onErrorResume(Mono::just)
          .block(Duration.ofSeconds(20));
      assertThat(error).isInstanceOf(PoolUnavailableException.class)
          .hasMessageContaining("the last attempt to open one failed");
      for (Throwable t = error; t != null; t = t.getCause()) {
        assertThat(t.toString()).doesNotContain(password);
      }
      assertThat(pool.toString()).doesNotContain(password);
    } finally {
      pool.dispose();
    }
  }
}
