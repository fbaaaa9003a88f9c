package io.lagoon.internal;

import io.lagoon.ConnectionPoolBuilder;
import io.lagoon.SessionReset;
import io.r2dbc.spi.Connection;
import io.r2dbc.spi.ConnectionFactoryOptions;
import io.r2dbc.spi.Option;
import io.r2dbc.spi.ValidationDepth;
import java.time.Duration;
import java.time.format.DateTimeParseException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.function.BiConsumer;
import java.util.function.Function;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import org.jspecify.annotations.Nullable;
import org.reactivestreams.Publisher;

/**
 * The pool options that {@code r2dbc:lagoon:} URLs and {@link ConnectionFactoryOptions} may carry:
 * one table row per option, naming it, saying how its value is read and which {@link
 * ConnectionPoolBuilder} method takes it. Every other option belongs to the pooled driver.
 *
 * <p>A value is a {@link String} when it comes from a URL, or a typed object when set
 * programmatically: an {@link Integer} (or another integral {@link Number} within {@code int}
 * range), a {@link Duration}, a {@link Boolean}, a {@link ValidationDepth}, a {@link Function}.
 * Text forms:
 *
 * <ul>
 *   <li>integer: decimal digits with an optional sign, e.g. {@code 10};
 *   <li>duration: ISO-8601 as read by {@link Duration#parse} in any case ({@code PT30S}, {@code
 *       pt5m}, {@code P1D}), or a whole number with one of the units {@code ms}, {@code s}, {@code
 *       m}, {@code h}, {@code d} in any case ({@code 500ms}, {@code 30s}, {@code 5m}, {@code 1h},
 *       {@code 1d}), or a bare {@code 0}; any other number without a unit is rejected. A sign is
 *       allowed ({@code -PT1S}, {@code PT-1S}, {@code -1s}): the builder reads a negative timeout
 *       as no limit, as r2dbc-pool does;
 *   <li>boolean: {@code true} or {@code false}, in any case;
 *   <li>validation depth: {@code LOCAL} or {@code REMOTE}, in any case.
 * </ul>
 *
 * <p>Surrounding blanks are ignored in text values, except in {@code poolName} and {@code
 * validationQuery}, which are taken as given. A malformed value is an {@link
 * IllegalArgumentException} naming the option and echoing only that option's value; range checks
 * are left to the builder, whose messages name the option too.
 */
public final class PoolOptions {

  /**
   * The table. Options of r2dbc-pool keep r2dbc-pool's names and value formats; Lagoon's own
   * options are named like their builder methods. Adding an option is one row.
   */
  private static final List<Row<?>> TABLE = List.of(
      // r2dbc-pool's options
      option("initialSize", PoolOptions::toInt, ConnectionPoolBuilder::initialSize),
      option("maxSize", PoolOptions::toInt, ConnectionPoolBuilder::maxSize),
      option("minIdle", PoolOptions::toInt, ConnectionPoolBuilder::minIdle),
      option("maxIdleTime", PoolOptions::toDuration, ConnectionPoolBuilder::maxIdleTime),
      option("maxLifeTime", PoolOptions::toDuration, ConnectionPoolBuilder::maxLifeTime),
      option("maxAcquireTime", PoolOptions::toDuration, ConnectionPoolBuilder::maxAcquireTime),
      option("maxCreateConnectionTime", PoolOptions::toDuration,
          ConnectionPoolBuilder::maxCreateConnectionTime),
      option("maxValidationTime", PoolOptions::toDuration,
          ConnectionPoolBuilder::maxValidationTime),
      option("acquireRetry", PoolOptions::toInt, ConnectionPoolBuilder::acquireRetry),
      option("validationQuery", PoolOptions::toText, ConnectionPoolBuilder::validationQuery),
      option("validationDepth", PoolOptions::toValidationDepth,
          ConnectionPoolBuilder::validationDepth),
      option("backgroundEvictionInterval", PoolOptions::toDuration,
          ConnectionPoolBuilder::backgroundEvictionInterval),
      option("poolName", PoolOptions::toText, ConnectionPoolBuilder::poolName),
      option("registerJmx", PoolOptions::toBoolean, ConnectionPoolBuilder::registerJmx),
      // programmatic only: a URL cannot carry a function
      option("postAllocate", PoolOptions::toHook, ConnectionPoolBuilder::postAllocate),
      option("preRelease", PoolOptions::toHook, ConnectionPoolBuilder::preRelease),
      // Lagoon's own options
      option("maxPendingAcquires", PoolOptions::toInt, ConnectionPoolBuilder::maxPendingAcquires),
      option("maxConcurrentCreates", PoolOptions::toInt,
          ConnectionPoolBuilder::maxConcurrentCreates),
      option("maxCloseTime", PoolOptions::toDuration, ConnectionPoolBuilder::maxCloseTime),
      option("keepaliveInterval", PoolOptions::toDuration,
          ConnectionPoolBuilder::keepaliveInterval),
      option("validationSkipWindow", PoolOptions::toDuration,
          ConnectionPoolBuilder::validationSkipWindow),
      option("sessionReset", PoolOptions::toSessionReset, ConnectionPoolBuilder::sessionReset),
      option("leakDetectionThreshold", PoolOptions::toDuration,
          ConnectionPoolBuilder::leakDetectionThreshold));

  private static final Set<String> NAMES = names(TABLE);

  static final String DURATION_FORMS = "ISO-8601 like PT30S or PT5M, or a whole number with a unit"
      + " ms, s, m, h or d like 500ms, 30s, 5m, 1h or 1d";

  private static final Pattern SHORT_DURATION =
      Pattern.compile("([+-]?[0-9]+)(ms|s|m|h|d)", Pattern.CASE_INSENSITIVE);
  private static final Pattern INTEGER = Pattern.compile("[+-]?[0-9]+");
  private static final Pattern ZERO = Pattern.compile("[+-]?0+");

  /**
   * The timeouts that read a negative duration as no limit, as r2dbc-pool does; the other duration
   * options refuse negatives (or, for backgroundEvictionInterval, keep the default), so a message
   * about a unit-less negative value hints at "no limit" only for these.
   */
  private static final Set<String> NEGATIVE_IS_NO_LIMIT = Set.of("maxAcquireTime",
      "maxCreateConnectionTime", "maxValidationTime", "maxIdleTime", "maxLifeTime");

  private PoolOptions() {}

  /** The names of all pool options, in table order. */
  public static Set<String> names() {
    return NAMES;
  }

  /** Whether {@code name} is a pool option (names are case-sensitive, as R2DBC options are). */
  public static boolean isPoolOption(String name) {
    return NAMES.contains(name);
  }

  /**
   * The pool option that {@code name} looks like without being it: the same letters in another
   * case or with {@code _}, {@code -}, {@code .} or blanks between words ({@code maxsize}, {@code
   * max_size}, {@code max-idle-time}), or at most two edits away (a letter added, dropped, changed,
   * or two neighbours swapped: {@code maxSzie}, {@code minIdel}); the nearest one, in table order
   * on a tie. Null when {@code name} is a pool option or looks like none.
   */
  public static @Nullable String lookalike(String name) {
    Objects.requireNonNull(name, "name must not be null");
    if (NAMES.contains(name)) {
      return null;
    }
    String key = normalized(name);
    String best = null;
    int bestDistance = MAX_TYPO_DISTANCE + 1;
    for (String option : NAMES) {
      int d = distance(key, normalized(option), bestDistance);
      if (d < bestDistance) {
        best = option;
        bestDistance = d;
      }
    }
    return best;
  }

  /**
   * Refuses every option of {@code options} that is not a pool option, looks like one (see {@link
   * #lookalike}) and is not among {@code driverOptions}: it would reach the driver, which ignores
   * it, while the pool silently ran with its default. The message names the option and the pool
   * option it resembles, never a value (a value may be a password).
   *
   * @param where how the message calls the pool, e.g. {@code r2dbc:lagoon:postgresql}
   * @param driver the driver's name, for the message
   * @throws IllegalArgumentException for the first such option
   */
  public static void checkNoLookalikes(ConnectionFactoryOptions options, Set<String> driverOptions,
      String where, String driver) {
    List<String> names = new ArrayList<>();
    ConnectionFactoryOptions.builder().from(options, o -> names.add(o.name()));
    for (String name : names) {
      if (driverOptions.contains(name)) {
        continue;
      }
      String meant = lookalike(name);
      if (meant != null) {
        String why = name.equalsIgnoreCase(meant) ? " (pool option names are case-sensitive)"
            : normalized(name).equals(normalized(meant))
                ? " (pool option names are camelCase, as in r2dbc-pool)" : "";
        throw new IllegalArgumentException("unknown option '" + name + "' in " + where
            + ": did you mean '" + meant + "'? It is not a pool option" + why + " and the "
            + driver + " driver does not declare it");
      }
    }
  }

  private static final int MAX_TYPO_DISTANCE = 2;

  /** Lower case, without the separators people put between words. */
  private static String normalized(String name) {
    StringBuilder b = new StringBuilder(name.length());
    for (int i = 0; i < name.length(); i++) {
      char c = name.charAt(i);
      if (c != '_' && c != '-' && c != '.' && !Character.isWhitespace(c)) {
        b.append(Character.toLowerCase(c));
      }
    }
    return b.toString();
  }

  /**
   * The optimal string alignment distance (insertions, deletions, substitutions and swaps of
   * neighbours, each costing one) between {@code a} and {@code b}, or {@code limit + 1} when their
   * lengths alone differ by more than {@code limit}.
   */
  static int distance(String a, String b, int limit) {
    if (Math.abs(a.length() - b.length()) > limit) {
      return limit + 1;
    }
    int[] before = new int[b.length() + 1];
    int[] previous = new int[b.length() + 1];
    int[] current = new int[b.length() + 1];
    for (int j = 0; j <= b.length(); j++) {
      previous[j] = j;
    }
    for (int i = 1; i <= a.length(); i++) {
      current[0] = i;
      for (int j = 1; j <= b.length(); j++) {
        int cost = a.charAt(i - 1) == b.charAt(j - 1) ? 0 : 1;
        int d = Math.min(Math.min(previous[j] + 1, current[j - 1] + 1), previous[j - 1] + cost);
        if (i > 1 && j > 1 && a.charAt(i - 1) == b.charAt(j - 2)
            && a.charAt(i - 2) == b.charAt(j - 1)) {
          d = Math.min(d, before[j - 2] + 1);
        }
        current[j] = d;
      }
      int[] t = before;
      before = previous;
      previous = current;
      current = t;
    }
    return previous[b.length()];
  }

  /**
   * Reads and checks every pool option present in {@code options}; other options are ignored.
   *
   * @throws IllegalArgumentException naming the first option whose value is malformed
   */
  public static Values read(ConnectionFactoryOptions options) {
    Objects.requireNonNull(options, "options must not be null");
    List<Value<?>> values = new ArrayList<>();
    for (Row<?> row : TABLE) {
      @Nullable Value<?> value = row.read(options);
      if (value != null) {
        values.add(value);
      }
    }
    return new Values(List.copyOf(values));
  }

  /** Pool options read from a {@link ConnectionFactoryOptions}, ready to apply to a builder. */
  public static final class Values {

    private final List<Value<?>> values;

    private Values(List<Value<?>> values) {
      this.values = values;
    }

    /**
     * Passes each value to its builder method, in table order.
     *
     * @throws IllegalArgumentException from the builder, naming the option, or for an option the
     *     builder cannot take yet
     */
    public void applyTo(ConnectionPoolBuilder builder) {
      Objects.requireNonNull(builder, "builder must not be null");
      for (Value<?> value : values) {
        value.applyTo(builder);
      }
    }

    /** The typed values by option name, in table order. */
    public Map<String, Object> asMap() {
      Map<String, Object> map = new LinkedHashMap<>();
      for (Value<?> value : values) {
        map.put(value.row().name(), value.value());
      }
      return Collections.unmodifiableMap(map);
    }

    /** Lists the option names only: values may be long or user-supplied functions. */
    @Override
    public String toString() {
      return "PoolOptions" + asMap().keySet();
    }
  }

  // ------------------------------------------------------------------------------------------
  // Table machinery
  // ------------------------------------------------------------------------------------------

  /** Reads an option's raw value (a String or a typed object), naming the option on failure. */
  @FunctionalInterface
  private interface Parser<T> {
    T parse(String option, Object value);
  }

  /** One option: its name, how its value is read, and the builder method that takes it. */
  private record Row<T>(
      String name,
      Parser<T> parser,
      BiConsumer<ConnectionPoolBuilder, ? super T> setter) {

    @Nullable Value<T> read(ConnectionFactoryOptions options) {
      @Nullable Object raw = options.getValue(Option.valueOf(name));
      return raw == null ? null : new Value<>(this, parser.parse(name, raw));
    }
  }

  private record Value<T>(Row<T> row, T value) {

    void applyTo(ConnectionPoolBuilder builder) {
      row.setter().accept(builder, value);
    }
  }

  private static Set<String> names(List<Row<?>> table) {
    Set<String> names = new LinkedHashSet<>();
    for (Row<?> row : table) {
      if (!names.add(row.name())) {
        throw new IllegalStateException("pool option " + row.name() + " is in the table twice");
      }
    }
    return Collections.unmodifiableSet(names);
  }

  private static <T> Row<T> option(
      String name, Parser<T> parser, BiConsumer<ConnectionPoolBuilder, ? super T> setter) {
    return new Row<>(name, parser, setter);
  }

  // ------------------------------------------------------------------------------------------
  // Parsers
  // ------------------------------------------------------------------------------------------

  static Integer toInt(String option, Object value) {
    if (value instanceof Integer) {
      return (Integer) value;
    }
    if (value instanceof Long || value instanceof Short || value instanceof Byte) {
      long l = ((Number) value).longValue();
      if (l < Integer.MIN_VALUE || l > Integer.MAX_VALUE) {
        throw new IllegalArgumentException(option + " (" + value + ") is out of range for an int");
      }
      return (int) l;
    }
    if (value instanceof CharSequence) {
      String text = value.toString().strip();
      if (INTEGER.matcher(text).matches()) {
        try {
          return Integer.parseInt(text);
        } catch (NumberFormatException e) {
          throw new IllegalArgumentException(
              option + " (" + quote(value) + ") is out of range for an int");
        }
      }
      throw new IllegalArgumentException(option + " (" + quote(value) + ") must be an integer");
    }
    throw wrongType(option, value, "an Integer or a String");
  }

  static Duration toDuration(String option, Object value) {
    if (value instanceof Duration) {
      return (Duration) value;
    }
    if (!(value instanceof CharSequence)) {
      throw wrongType(option, value, "a Duration or a String");
    }
    String text = value.toString().strip();
    try {
      Matcher m = SHORT_DURATION.matcher(text);
      if (m.matches()) {
        long amount = Long.parseLong(m.group(1));
        switch (m.group(2).toLowerCase(Locale.ROOT)) {
          case "ms":
            return Duration.ofMillis(amount);
          case "s":
            return Duration.ofSeconds(amount);
          case "m":
            return Duration.ofMinutes(amount);
          case "h":
            return Duration.ofHours(amount);
          default:
            return Duration.ofDays(amount);
        }
      }
      if (INTEGER.matcher(text).matches()) {
        if (ZERO.matcher(text).matches()) {
          return Duration.ZERO; // zero in any unit: the builder says where zero is meaningful
        }
        throw new IllegalArgumentException(option + " (" + quote(value) + ") needs a unit: use "
            + DURATION_FORMS + (text.startsWith("-") && NEGATIVE_IS_NO_LIMIT.contains(option)
                ? " (any negative duration, such as -1s or -PT1S, means no limit)" : ""));
      }
      return Duration.parse(text);
    } catch (DateTimeParseException e) {
      if (e.getCause() instanceof ArithmeticException
          || e.getCause() instanceof NumberFormatException) {
        throw tooLong(option, value);
      }
      throw new IllegalArgumentException(
          option + " (" + quote(value) + ") must be a duration: " + DURATION_FORMS);
    } catch (NumberFormatException | ArithmeticException e) {
      throw tooLong(option, value);
    }
  }

  static Boolean toBoolean(String option, Object value) {
    if (value instanceof Boolean) {
      return (Boolean) value;
    }
    if (value instanceof CharSequence) {
      String text = value.toString().strip();
      if (text.equalsIgnoreCase("true")) {
        return Boolean.TRUE;
      }
      if (text.equalsIgnoreCase("false")) {
        return Boolean.FALSE;
      }
      throw new IllegalArgumentException(
          option + " (" + quote(value) + ") must be true or false");
    }
    throw wrongType(option, value, "a Boolean or a String");
  }

  static String toText(String option, Object value) {
    if (value instanceof CharSequence) {
      return value.toString();
    }
    throw wrongType(option, value, "a String");
  }

  static ValidationDepth toValidationDepth(String option, Object value) {
    if (value instanceof ValidationDepth) {
      return (ValidationDepth) value;
    }
    if (value instanceof CharSequence) {
      String text = value.toString().strip();
      for (ValidationDepth depth : ValidationDepth.values()) {
        if (depth.name().equalsIgnoreCase(text)) {
          return depth;
        }
      }
      throw new IllegalArgumentException(option + " (" + quote(value) + ") must be one of "
          + Arrays.stream(ValidationDepth.values()).map(Enum::name)
              .collect(Collectors.joining(", "))
          + " (in any case)");
    }
    throw wrongType(option, value, "a ValidationDepth or a String");
  }

  static SessionReset toSessionReset(String option, Object value) {
    if (value instanceof SessionReset) {
      return (SessionReset) value;
    }
    if (value instanceof CharSequence) {
      String text = value.toString().strip();
      for (SessionReset mode : SessionReset.values()) {
        if (mode.name().equalsIgnoreCase(text)) {
          return mode;
        }
      }
      throw new IllegalArgumentException(option + " (" + quote(value) + ") must be one of "
          + Arrays.stream(SessionReset.values()).map(Enum::name).collect(Collectors.joining(", "))
          + " (in any case)");
    }
    throw wrongType(option, value, "a SessionReset or a String");
  }

  /**
   * A {@code postAllocate} or {@code preRelease} function. Only a {@link Function} is accepted, so
   * these options cannot come from a URL. Its type arguments cannot be checked at run time: the
   * function is trusted to take a {@link Connection} and return a {@code Publisher<Void>}, as
   * r2dbc-pool's options of the same name do.
   */
  @SuppressWarnings("unchecked")
  static Function<Connection, Publisher<Void>> toHook(String option, Object value) {
    if (value instanceof Function) {
      return (Function<Connection, Publisher<Void>>) value;
    }
    if (value instanceof CharSequence) {
      throw new IllegalArgumentException(option + " (" + quote(value) + ") cannot be set in a URL:"
          + " set it programmatically to a Function<Connection, Publisher<Void>>");
    }
    throw wrongType(option, value, "a Function<Connection, Publisher<Void>>");
  }

  private static IllegalArgumentException tooLong(String option, Object value) {
    return new IllegalArgumentException(
        option + " (" + quote(value) + ") is out of range for a duration");
  }

  private static IllegalArgumentException wrongType(String option, Object value, String expected) {
    return new IllegalArgumentException(option + " (" + value + ") must be " + expected
        + ", not a " + value.getClass().getName());
  }

  /** A text value in quotes, like the builder's messages; any other value as it prints. */
  private static String quote(Object value) {
    return value instanceof CharSequence ? "'" + value + "'" : String.valueOf(value);
  }
}
