package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"

	"github.com/gofiber/fiber/v2"

	"github.com/flowbot/flowbot/store"
)

// IdempotencyHeader makes a POST to /api/ safe to retry: a repeat with
// the same key within 24 hours (on any instance) is answered as the first
// was, and does nothing again.
const IdempotencyHeader = "Idempotency-Key"

// maxIdempotencyKey is the longest key accepted.
const maxIdempotencyKey = 255

// idempotent answers a repeated POST from the store; a first one runs,
// and its answer is kept unless it was a 5xx (which did nothing: the key
// is forgotten so that a retry runs it).
func (s *Server) idempotent(c *fiber.Ctx) error {
	key := c.Get(IdempotencyHeader)
	if key == "" || c.Method() != fiber.MethodPost {
		return c.Next()
	}
	if len(key) > maxIdempotencyKey {
		return fiber.NewError(fiber.StatusBadRequest, "the Idempotency-Key is longer than 255 characters")
	}
	sum := sha256.Sum256(rawBody(c))
	fingerprint := c.Method() + " " + c.OriginalURL() + " " + hex.EncodeToString(sum[:])
	ctx := c.UserContext()
	reservedAt := s.cfg.Now()
	prior, err := s.store.Reserve(ctx, key, fingerprint, reservedAt)
	switch {
	case errors.Is(err, store.ErrInProgress):
		return c.Status(fiber.StatusConflict).JSON(fiber.Map{"error": "a request with this Idempotency-Key is being handled; retry in a moment"})
	case err != nil:
		return err
	case prior != nil && prior.Fingerprint != fingerprint:
		return c.Status(fiber.StatusUnprocessableEntity).JSON(fiber.Map{"error": "this Idempotency-Key was used for another request (method, path or body differ): use a new key for a new request"})
	case prior != nil:
		c.Set("Idempotent-Replayed", "true")
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		return c.Status(prior.Status).Send(prior.Body)
	}
	if err := c.Next(); err != nil {
		if herr := s.app.Config().ErrorHandler(c, err); herr != nil {
			s.store.Forget(ctx, key, reservedAt)
			return herr
		}
	}
	status := c.Response().StatusCode()
	if status >= 500 {
		if err := s.store.Forget(ctx, key, reservedAt); err != nil {
			s.log.Error("forgetting an idempotency key after a 5xx; retries with it wait a minute", "err", err)
		}
		return nil
	}
	err = s.store.Answer(ctx, key, reservedAt, store.Answer{Status: status, Body: bytes.Clone(c.Response().Body())})
	switch {
	case errors.Is(err, store.ErrConflict):
		s.log.Warn("an idempotent answer came after its key was taken over (the request ran longer than a minute); the answer the key keeps is the other request's", "status", status)
	case err != nil:
		s.log.Error("recording an idempotent answer; a retry with the key waits a minute, then runs again", "err", err)
	}
	return nil
}
