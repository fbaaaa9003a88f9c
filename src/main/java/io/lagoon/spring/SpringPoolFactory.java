package io.lagoon.spring;

import io.lagoon.ConnectionPool;
import io.lagoon.ConnectionPoolBuilder;
import io.lagoon.SessionReset;
import io.lagoon.internal.DriverOptions;
import io.lagoon.internal.PoolOptions;
import io.r2dbc.spi.ConnectionFactory;
import io.r2dbc.spi.ConnectionFactoryOptions;
import io.r2dbc.spi.Option;
import io.r2dbc.spi.ValidationDepth;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import org.jspecify.annotations.Nullable;
import org.springframework.boot.context.properties.bind.BindResult;
import org.springframework.boot.context.properties.bind.Bindable;
import org.springframework.boot.context.properties.bind.Binder;
import org.springframework.boot.r2dbc.ConnectionFactoryDecorator;
import org.springframework.boot.r2dbc.EmbeddedDatabaseConnection;
import org.springframework.boot.r2dbc.OptionsCapableConnectionFactory;
import org.springframework.boot.r2dbc.autoconfigure.ConnectionFactoryOptionsBuilderCustomizer;
import org.springframework.boot.r2dbc.autoconfigure.R2dbcConnectionDetails;
import org.springframework.boot.r2dbc.autoconfigure.R2dbcProperties;
import org.springframework.util.StringUtils;

/**
 * Builds the application's pool the way Spring Boot builds its {@code ConnectionFactory}: the
 * connection options from {@link R2dbcConnectionDetails} (or {@code spring.r2dbc.url}, or an
 * embedded database), Spring Boot's option customizers and decorators, then a Lagoon pool over the
 * driver, configured by the URL's pool options and the {@code spring.r2dbc.pool.*} and {@code
 * lagoon.pool.*} properties.
 *
 * <p>The rule when a property and a URL option set the same pool option: the same value is fine;
 * different values stop the application at startup with an error naming both.
 */
final class SpringPoolFactory {

  /** The pool's name when neither the URL nor lagoon.pool.pool-name gives one: the bean's. */
  static final String DEFAULT_POOL_NAME = "connectionFactory";

  /** One pool option set by a Spring property. */
  private record PropertyRow(String property, String option, Class<?> type) {}

  /** Spring Boot's own pool properties, with the Lagoon option each one sets. */
  static final List<PropertyRow> SPRING_ROWS = List.of(
      row("spring.r2dbc.pool.initial-size", "initialSize", Integer.class),
      row("spring.r2dbc.pool.max-size", "maxSize", Integer.class),
      row("spring.r2dbc.pool.min-idle", "minIdle", Integer.class),
      row("spring.r2dbc.pool.max-idle-time", "maxIdleTime", Duration.class),
      row("spring.r2dbc.pool.max-life-time", "maxLifeTime", Duration.class),
      row("spring.r2dbc.pool.max-acquire-time", "maxAcquireTime", Duration.class),
      row("spring.r2dbc.pool.acquire-retry", "acquireRetry", Integer.class),
      row("spring.r2dbc.pool.max-create-connection-time", "maxCreateConnectionTime",
          Duration.class),
      row("spring.r2dbc.pool.max-validation-time", "maxValidationTime", Duration.class),
      row("spring.r2dbc.pool.validation-query", "validationQuery", String.class),
      row("spring.r2dbc.pool.validation-depth", "validationDepth", ValidationDepth.class));

  /** Lagoon's other options, as {@link LagoonProperties.Pool} declares them. */
  static final List<PropertyRow> LAGOON_ROWS = List.of(
      row("lagoon.pool.pool-name", "poolName", String.class),
      row("lagoon.pool.max-pending-acquires", "maxPendingAcquires", Integer.class),
      row("lagoon.pool.max-concurrent-creates", "maxConcurrentCreates", Integer.class),
      row("lagoon.pool.max-close-time", "maxCloseTime", Duration.class),
      row("lagoon.pool.keepalive-interval", "keepaliveInterval", Duration.class),
      row("lagoon.pool.validation-skip-window", "validationSkipWindow", Duration.class),
      row("lagoon.pool.session-reset", "sessionReset", SessionReset.class),
      row("lagoon.pool.background-eviction-interval", "backgroundEvictionInterval",
          Duration.class),
      row("lagoon.pool.register-jmx", "registerJmx", Boolean.class),
      row("lagoon.pool.leak-detection-threshold", "leakDetectionThreshold", Duration.class));

  private static PropertyRow row(String property, String option, Class<?> type) {
    return new PropertyRow(property, option, type);
  }

  private SpringPoolFactory() {}

  /**
   * Builds the pool.
   *
   * @throws IllegalArgumentException when the options cannot make a pool: a property and a URL
   *     option disagree, a value is out of range, the driver is missing
   */
  static ConnectionPool create(R2dbcProperties properties,
      @Nullable R2dbcConnectionDetails details, @Nullable ClassLoader classLoader, Binder binder,
      List<ConnectionFactoryOptionsBuilderCustomizer> optionsCustomizers,
      List<ConnectionFactoryDecorator> decorators,
      List<ConnectionPoolBuilderCustomizer> poolCustomizers) {
    ConnectionFactoryOptions.Builder builder = connectionOptions(properties, details, classLoader);
    optionsCustomizers.forEach(c -> c.customize(builder));
    ConnectionFactoryOptions options = withProperties(asLagoon(builder.build()), binder);
    ConnectionFactoryOptions driverOptions = DriverOptions.of(options);
    PoolOptions.Values poolOptions = PoolOptions.read(options);
    ConnectionFactory driver = new OptionsCapableConnectionFactory(driverOptions,
        DriverOptions.factory(options, driverOptions));
    for (ConnectionFactoryDecorator decorator : decorators) {
      driver = decorator.decorate(driver);
    }
    ConnectionPoolBuilder pool = ConnectionPool.builder(driver);
    try {
      poolOptions.applyTo(pool);
    } catch (IllegalArgumentException e) {
      String where = setBy(e.getMessage(), binder);
      if (where.isEmpty()) {
        throw e;
      }
      // The builder's message, completed with the property: the root cause that users read.
      IllegalArgumentException named = new IllegalArgumentException(e.getMessage() + where);
      named.setStackTrace(e.getStackTrace());
      throw named;
    }
    poolCustomizers.forEach(c -> c.customize(pool));
    return pool.build();
  }

  /** What Spring Boot connects to: its connection details, else the URL, else H2 in memory. */
  private static ConnectionFactoryOptions.Builder connectionOptions(R2dbcProperties properties,
      @Nullable R2dbcConnectionDetails details, @Nullable ClassLoader classLoader) {
    if (details != null) {
      return details.getConnectionFactoryOptions().mutate();
    }
    String url = properties.getUrl();
    String database = properties.isGenerateUniqueName() ? properties.determineUniqueName()
        : properties.getName();
    String user = properties.getUsername();
    if (!StringUtils.hasText(url)) {
      EmbeddedDatabaseConnection embedded = EmbeddedDatabaseConnection.get(classLoader);
      if (embedded == EmbeddedDatabaseConnection.NONE) {
        throw new IllegalArgumentException("No database to pool: set spring.r2dbc.url (for"
            + " example r2dbc:postgresql://localhost/mydb), or put an embedded database (H2 with"
            + " r2dbc-h2) on the class path");
      }
      url = embedded.getUrl(StringUtils.hasText(database) ? database : "testdb");
      database = null;
      user = StringUtils.hasText(user) ? user : "sa";
    }
    ConnectionFactoryOptions parsed = ConnectionFactoryOptions.parse(url);
    ConnectionFactoryOptions.Builder b = parsed.mutate();
    setIfAbsent(b, parsed, ConnectionFactoryOptions.USER, user);
    setIfAbsent(b, parsed, ConnectionFactoryOptions.PASSWORD, (CharSequence) properties.getPassword());
    setIfAbsent(b, parsed, ConnectionFactoryOptions.DATABASE, database);
    properties.getProperties().forEach((key, value) -> b.option(Option.valueOf(key), value));
    return b;
  }

  private static <T extends CharSequence> void setIfAbsent(ConnectionFactoryOptions.Builder b,
      ConnectionFactoryOptions parsed, Option<T> option, @Nullable T value) {
    if (!parsed.hasOption(option) && StringUtils.hasText(value)) {
      b.option(option, value);
    }
  }

  /**
   * The same options in Lagoon's form: {@code driver=lagoon}, {@code protocol=<driver>[:<protocol>]}.
   * A plain driver URL is pooled by Lagoon; so is an {@code r2dbc:pool:} URL, whose options Lagoon
   * reads as r2dbc-pool does, so that r2dbc-pool never sits in front of or behind Lagoon.
   */
  static ConnectionFactoryOptions asLagoon(ConnectionFactoryOptions options) {
    Object driver = options.getValue(ConnectionFactoryOptions.DRIVER);
    if (driver == null || driver.toString().isBlank()) {
      throw new IllegalArgumentException("spring.r2dbc.url names no driver: expected"
          + " r2dbc:<driver>://... (or " + DriverOptions.URL_FORM + ")");
    }
    String name = driver.toString();
    if (name.equals(DriverOptions.LAGOON_DRIVER)) {
      return options;
    }
    ConnectionFactoryOptions.Builder b = options.mutate()
        .option(ConnectionFactoryOptions.DRIVER, DriverOptions.LAGOON_DRIVER);
    if (!name.equals("pool")) {
      Object protocol = options.getValue(ConnectionFactoryOptions.PROTOCOL);
      b.option(ConnectionFactoryOptions.PROTOCOL, protocol == null
          || protocol.toString().isBlank() ? name : name + ":" + protocol);
    }
    return b.build();
  }

  /**
   * Adds the pool options set by properties; fails on every property that disagrees with the same
   * option in the URL (or {@code spring.r2dbc.properties}).
   */
  static ConnectionFactoryOptions withProperties(ConnectionFactoryOptions options, Binder binder) {
    Map<String, Object> fromUrl = PoolOptions.read(options).asMap();
    Map<PropertyRow, Object> set = bound(binder);
    List<String> conflicts = new ArrayList<>();
    ConnectionFactoryOptions.Builder b = options.mutate();
    for (Map.Entry<PropertyRow, Object> e : set.entrySet()) {
      PropertyRow row = e.getKey();
      Object url = fromUrl.get(row.option());
      if (url != null && !url.equals(e.getValue())) {
        conflicts.add(row.property() + " (" + e.getValue() + ") and the URL's " + row.option()
            + " (" + url + ")");
      }
      b.option(Option.valueOf(row.option()), e.getValue());
    }
    if (!conflicts.isEmpty()) {
      throw new IllegalArgumentException("Lagoon pool options set twice with different values: "
          + String.join("; ", conflicts) + ". Set each option once: in spring.r2dbc.url or in"
          + " the property (the same value in both is fine).");
    }
    if (!fromUrl.containsKey("poolName") && set.keySet().stream()
        .noneMatch(r -> r.option().equals("poolName"))) {
      b.option(Option.valueOf("poolName"), DEFAULT_POOL_NAME);
    }
    return b.build();
  }

  private static Map<PropertyRow, Object> bound(Binder binder) {
    Map<PropertyRow, Object> set = new LinkedHashMap<>();
    for (List<PropertyRow> rows : List.of(SPRING_ROWS, LAGOON_ROWS)) {
      for (PropertyRow row : rows) {
        BindResult<?> r = binder.bind(row.property(), Bindable.of(row.type()));
        if (r.isBound()) {
          set.put(row, Objects.requireNonNull(r.get()));
        }
      }
    }
    return set;
  }

  /** " (set by spring.r2dbc.pool.max-size)" when the builder's message is about a property. */
  private static String setBy(@Nullable String message, Binder binder) {
    if (message == null) {
      return "";
    }
    for (PropertyRow row : bound(binder).keySet()) {
      if (message.startsWith(row.option() + " (") || message.contains(" " + row.option() + " (")) {
        return " (" + row.option() + " is set by " + row.property() + ")";
      }
    }
    return "";
  }
}
