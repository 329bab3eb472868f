package whatsapp

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/flowbot/flowbot/engine"
	"github.com/flowbot/flowbot/flows"
)

// MessageWebhook is the webhook WhatsApp would send for a contact's
// message: what a dry run's contact writes enters the conversation the
// way serve's do, through Parse and ingest.Items, so that a message reads
// the same everywhere (a location's text is its name, a caption is a
// media message's text, a form answer carries its token ...).
func MessageWebhook(phoneNumberID, contact, name string, in engine.Inbound, at time.Time) []byte {
	m := map[string]any{"id": in.ID, "timestamp": strconv.FormatInt(at.Unix(), 10), "type": in.Type}
	waID, userID := in.WaID, in.UserID
	if waID == "" && userID == "" {
		if flows.IsDigits(contact) {
			waID = contact
		} else {
			userID = contact
		}
	}
	profile := map[string]any{"profile": map[string]any{"name": name, "username": in.Username}}
	if waID != "" {
		m["from"], profile["wa_id"] = waID, waID
	}
	if userID != "" {
		m["from_user_id"], profile["user_id"] = userID, userID
	}
	switch in.Type {
	case "text":
		m["text"] = map[string]any{"body": in.Text}
	case "interactive":
		switch {
		case in.Form != nil || in.FormToken != "":
			answer := map[string]any{}
			for k, v := range in.Form {
				answer[k] = v
			}
			if in.FormToken != "" {
				answer["flow_token"] = in.FormToken
			}
			raw, _ := json.Marshal(answer)
			body := in.Text
			if body == "" {
				body = "Sent"
			}
			m["interactive"] = map[string]any{"type": "nfm_reply", "nfm_reply": map[string]any{"name": "flow", "body": body, "response_json": string(raw)}}
		default:
			m["interactive"] = map[string]any{"type": "button_reply", "button_reply": map[string]any{"id": in.Choice, "title": in.Text}}
		}
	case "button":
		m["button"] = map[string]any{"payload": in.Choice, "text": in.Text}
	case "image", "video", "audio", "document", "sticker":
		md := in.Media
		caption := md.Caption
		if caption == "" {
			caption = in.Text
		}
		w := map[string]any{"id": md.ID, "mime_type": md.MimeType, "caption": caption, "sha256": md.SHA256}
		if md.Filename != "" {
			w["filename"] = md.Filename
		}
		if md.Voice {
			w["voice"] = true
		}
		m[in.Type] = w
	case "location":
		l := in.Location
		m["location"] = map[string]any{"latitude": l.Latitude, "longitude": l.Longitude, "name": l.Name, "address": l.Address}
	case "reaction":
		m["reaction"] = map[string]any{"message_id": in.ReactionTo, "emoji": in.Text}
	case "system":
		m["system"] = map[string]any{"body": in.Text, "type": "customer_changed_number"}
	case "contacts":
		cards := []any{}
		for _, c := range in.Contacts {
			card, _ := c.(map[string]any)
			name, _ := card["name"].(string)
			cards = append(cards, map[string]any{"name": map[string]any{"formatted_name": name}, "phones": card["phones"]})
		}
		m["contacts"] = cards
	case "order":
		items := []any{}
		for _, it := range in.Order.Items {
			items = append(items, it)
		}
		m["order"] = map[string]any{"catalog_id": in.Order.CatalogID, "text": in.Order.Text, "product_items": items}
	}
	if r := in.Referral; r != (flows.ReferralEnv{}) {
		m["referral"] = map[string]any{"source_type": r.SourceType, "source_id": r.SourceID, "source_url": r.SourceURL, "headline": r.Headline,
			"body": r.Body, "ctwa_clid": r.CtwaClid, "media_type": r.MediaType, "image_url": r.ImageURL, "video_url": r.VideoURL, "thumbnail_url": r.ThumbnailURL}
		if r.WelcomeMessage != "" {
			m["referral"].(map[string]any)["welcome_message"] = map[string]any{"text": r.WelcomeMessage}
		}
	}
	if c := in.Context; c.ID != "" {
		m["context"] = map[string]any{"id": c.ID, "from": c.From, "forwarded": c.Forwarded, "frequently_forwarded": c.FrequentlyForwarded}
	}
	value := map[string]any{"messaging_product": "whatsapp", "metadata": map[string]any{"display_phone_number": "15550000000", "phone_number_id": phoneNumberID},
		"contacts": []any{profile}, "messages": []any{m}}
	body, _ := json.Marshal(map[string]any{"object": "whatsapp_business_account",
		"entry": []any{map[string]any{"id": "0", "changes": []any{map[string]any{"field": "messages", "value": value}}}}})
	return body
}
