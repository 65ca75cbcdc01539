package main

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/liveengine/liveengine/sfu"
)

// runRoomToken mints a room join token with webrtc.room_secret, so a person
// can open a call or a live room in room.html before any app mints tokens
// through the control plane. It prints the token and the page URL.
func runRoomToken(args []string) error {
	fs, path := configFlag("room-token", args)
	room := fs.String("room", "", "room name ([A-Za-z0-9_.-], required)")
	identity := fs.String("identity", "", "participant id, unique in the room (required)")
	name := fs.String("name", "", "display name (default: the identity)")
	kind := fs.String("kind", sfu.RoomCall, "room kind: call or live")
	viewer := fs.Bool("viewer", false, "may only watch (no camera or microphone)")
	ttl := fs.Duration("ttl", 6*time.Hour, "how long the token is valid")
	fs.Parse(args)
	conf, err := loadConfig(*path)
	if err != nil {
		return err
	}
	if conf.WebRTC.RoomSecret == "" {
		return errors.New("webrtc.room_secret is empty, so the server refuses every room token: set the same secret for the server and this command (LIVEENGINE_WEBRTC_ROOM_SECRET=...)")
	}
	if *name == "" {
		*name = *identity
	}
	c := sfu.JoinClaims{Room: *room, Identity: *identity, Name: *name, Kind: *kind, CanPublish: !*viewer}
	tok, err := sfu.SignJoinToken(conf.WebRTC.RoomSecret, c, *ttl)
	if err != nil {
		return err
	}
	// Refuse what the server would refuse, with the server's words.
	if _, err := sfu.ParseJoinToken(conf.WebRTC.RoomSecret, tok); err != nil {
		return err
	}
	fmt.Println(tok)
	base := strings.TrimRight(conf.Control.PublicHTTPURL, "/")
	fmt.Printf("open: %s/webrtc/room.html?token=%s\n", base, url.QueryEscape(tok))
	return nil
}
