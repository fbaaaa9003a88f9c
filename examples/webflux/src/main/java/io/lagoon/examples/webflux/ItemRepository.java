package io.lagoon.examples.webflux;

import io.r2dbc.spi.Readable;
import java.time.OffsetDateTime;
import org.springframework.r2dbc.core.DatabaseClient;
import org.springframework.stereotype.Repository;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/**
 * Table {@code item} through Spring's {@link DatabaseClient}, which borrows a connection from the
 * pool for each call (or uses the transaction's connection inside a transaction) and returns it
 * when the call completes.
 */
@Repository
public class ItemRepository {

  private static final String COLUMNS = "id, name, quantity, created_at";

  private final DatabaseClient db;

  public ItemRepository(DatabaseClient db) {
    this.db = db;
  }

  public Flux<Item> findAll() {
    return db.sql("SELECT " + COLUMNS + " FROM item ORDER BY id")
        .map(ItemRepository::toItem)
        .all();
  }

  public Mono<Item> findById(long id) {
    return db.sql("SELECT " + COLUMNS + " FROM item WHERE id = :id")
        .bind("id", id)
        .map(ItemRepository::toItem)
        .one();
  }

  /** Inserts a row; emits the id the database generated. */
  public Mono<Long> insert(String name, int quantity) {
    return db.sql("INSERT INTO item (name, quantity) VALUES (:name, :quantity)")
        .bind("name", name)
        .bind("quantity", quantity)
        .filter(statement -> statement.returnGeneratedValues("id"))
        .map(row -> row.get("id", Long.class))
        .one();
  }

  private static Item toItem(Readable row) {
    return new Item(row.get("id", Long.class), row.get("name", String.class),
        row.get("quantity", Integer.class), row.get("created_at", OffsetDateTime.class));
  }
}
