package io.lagoon.examples.webflux;

import java.net.URI;
import org.springframework.http.HttpStatus;
import org.springframework.http.ResponseEntity;
import org.springframework.transaction.reactive.TransactionalOperator;
import org.springframework.web.bind.annotation.GetMapping;
import org.springframework.web.bind.annotation.PathVariable;
import org.springframework.web.bind.annotation.PostMapping;
import org.springframework.web.bind.annotation.RequestBody;
import org.springframework.web.bind.annotation.RequestMapping;
import org.springframework.web.bind.annotation.RestController;
import org.springframework.web.server.ResponseStatusException;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;

/** {@code GET /items}, {@code GET /items/{id}} and {@code POST /items}. */
@RestController
@RequestMapping("/items")
public class ItemController {

  private final ItemRepository items;
  private final TransactionalOperator transaction;

  public ItemController(ItemRepository items, TransactionalOperator transaction) {
    this.items = items;
    this.transaction = transaction;
  }

  @GetMapping
  public Flux<Item> list() {
    return items.findAll();
  }

  @GetMapping("/{id}")
  public Mono<Item> get(@PathVariable long id) {
    return items.findById(id)
        .switchIfEmpty(Mono.error(
            () -> new ResponseStatusException(HttpStatus.NOT_FOUND, "no item " + id)));
  }

  /**
   * Inserts the item and reads it back (with its generated id and timestamp) in one transaction:
   * both statements run on the same pooled connection, which goes back to the pool after COMMIT.
   */
  @PostMapping
  public Mono<ResponseEntity<Item>> create(@RequestBody NewItem body) {
    String name = body.name() == null ? "" : body.name().strip();
    int quantity = body.quantity() == null ? 0 : body.quantity();
    if (name.isEmpty() || name.length() > 100) {
      return Mono.error(new ResponseStatusException(HttpStatus.BAD_REQUEST,
          "name must have 1 to 100 characters"));
    }
    if (quantity < 0) {
      return Mono.error(new ResponseStatusException(HttpStatus.BAD_REQUEST,
          "quantity must not be negative"));
    }
    return items.insert(name, quantity)
        .flatMap(items::findById)
        .as(transaction::transactional)
        .map(item -> ResponseEntity.created(URI.create("/items/" + item.id())).body(item));
  }
}
