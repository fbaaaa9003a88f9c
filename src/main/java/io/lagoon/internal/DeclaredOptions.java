package io.lagoon.internal;

import io.r2dbc.spi.ConnectionFactoryOptions;
import io.r2dbc.spi.ConnectionFactoryProvider;
import io.r2dbc.spi.Option;
import java.lang.reflect.Field;
import java.lang.reflect.Modifier;
import java.util.Iterator;
import java.util.LinkedHashSet;
import java.util.ServiceConfigurationError;
import java.util.ServiceLoader;
import java.util.Set;

/**
 * The option names a pooled driver declares: the standard ones of {@link ConnectionFactoryOptions}
 * and the {@code public static} {@link Option} constants of the driver's {@link
 * ConnectionFactoryProvider} (as r2dbc-postgresql and r2dbc-mariadb declare theirs, such as {@code
 * applicationName} or {@code sslMode}). Used only to tell a driver option from a misspelt pool
 * option; nothing is ever refused for being absent here unless it also looks like a pool option.
 */
public final class DeclaredOptions {

  private DeclaredOptions() {}

  /**
   * The option names declared for the driver that supports {@code delegateOptions}, the provider
   * found as {@code ConnectionFactories} finds it; the standard names alone when no provider is
   * found or its constants cannot be read.
   */
  public static Set<String> declaredFor(ConnectionFactoryOptions delegateOptions, String except) {
    Set<String> names = new LinkedHashSet<>();
    addConstants(ConnectionFactoryOptions.class, names);
    Iterator<ConnectionFactoryProvider> providers = ServiceLoader
        .load(ConnectionFactoryProvider.class, ConnectionFactoryProvider.class.getClassLoader())
        .iterator();
    while (hasNext(providers)) {
      try {
        ConnectionFactoryProvider provider = providers.next();
        if (!except.equals(provider.getDriver()) && provider.supports(delegateOptions)) {
          addConstants(provider.getClass(), names);
          break;
        }
      } catch (ServiceConfigurationError | RuntimeException e) {
        // a provider that fails to load cannot be the driver ConnectionFactories will pick either
      }
    }
    return names;
  }

  /** Adds the names of the public static Option constants of {@code type} and its supertypes. */
  private static void addConstants(Class<?> type, Set<String> names) {
    Field[] fields;
    try {
      fields = type.getFields();
    } catch (SecurityException e) {
      return;
    }
    for (Field f : fields) {
      if (!Modifier.isStatic(f.getModifiers()) || !Option.class.isAssignableFrom(f.getType())) {
        continue;
      }
      try {
        Object value = f.get(null);
        if (value instanceof Option<?> option) {
          names.add(option.name());
        }
      } catch (IllegalAccessException | RuntimeException | LinkageError e) {
        // an unreadable constant (module rules, failed initialization) declares nothing
      }
    }
  }

  private static boolean hasNext(Iterator<ConnectionFactoryProvider> providers) {
    try {
      return providers.hasNext();
    } catch (ServiceConfigurationError | RuntimeException e) {
      return false;
    }
  }
}
