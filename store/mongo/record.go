package mongo

import (
	"bytes"
	"encoding/binary"
	"errors"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/flowbot/flowbot/engine/conversation"
)

// A contact's record is stored as one flat BSON document: the engine's
// session under the names of its JSON form (engine.Session carries no
// storage tags: its JSON tags are the one description of its fields),
// beside the host's part under its bson tags. The names are those
// flowbot has always written, so that stored records keep loading
// (fixture_test.go).

// encodeRecord writes a record as one document.
func encodeRecord(r *conversation.Record) ([]byte, error) {
	var buf bytes.Buffer
	enc := bson.NewEncoder(bson.NewDocumentWriter(&buf))
	enc.UseJSONStructTags()
	if err := enc.Encode(&r.Session); err != nil {
		return nil, err
	}
	session := buf.Bytes()
	host, err := bson.Marshal(&r.Host)
	if err != nil {
		return nil, err
	}
	// Both are int32 length, elements, 0: one document of both's
	// elements.
	out := make([]byte, 4, len(session)+len(host)-5)
	out = append(out, session[4:len(session)-1]...)
	out = append(out, host[4:len(host)-1]...)
	out = append(out, 0)
	binary.LittleEndian.PutUint32(out, uint32(len(out)))
	return out, nil
}

// decodeRecord reads a record: the session's fields by their JSON names,
// the host's by their bson tags, documents inside as maps.
func decodeRecord(raw []byte) (*conversation.Record, error) {
	if len(raw) < 5 {
		return nil, errors.New("a record shorter than an empty document")
	}
	r := &conversation.Record{}
	dec := bson.NewDecoder(bson.NewDocumentReader(bytes.NewReader(raw)))
	dec.DefaultDocumentMap()
	dec.UseJSONStructTags()
	if err := dec.Decode(&r.Session); err != nil {
		return nil, err
	}
	dec = bson.NewDecoder(bson.NewDocumentReader(bytes.NewReader(raw)))
	dec.DefaultDocumentMap()
	if err := dec.Decode(&r.Host); err != nil {
		return nil, err
	}
	return r, nil
}
