package io.lagoon.testing;

import io.r2dbc.spi.Connection;
import java.lang.reflect.Field;

/**
 * The physical connection behind a pooled handle, read without {@code unwrap()}: unwrapping counts
 * as reaching behind the pool (the connection is then reset or replaced on release), which tests
 * that only want to know which connection they were lent must not cause.
 */
public final class Peek {

  private Peek() {}

  /** The physical connection the handle was lent, whether or not the handle is still live. */
  public static Connection physical(Connection handle) {
    try {
      Field entryField = handle.getClass().getDeclaredField("entry");
      entryField.setAccessible(true);
      Object entry = entryField.get(handle);
      Field connectionField = entry.getClass().getDeclaredField("connection");
      connectionField.setAccessible(true);
      return (Connection) connectionField.get(entry);
    } catch (ReflectiveOperationException e) {
      throw new IllegalStateException("not a pooled handle: " + handle.getClass().getName(), e);
    }
  }
}
