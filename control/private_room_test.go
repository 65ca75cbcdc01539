package control

import "testing"

// A private stream is hidden from strangers on every route, so its room
// must not take their comments or reactions over REST either (the WebSocket
// already refuses them at subscribe).
func TestPrivateRoomClosedToStrangers(t *testing.T) {
	_, c := startServer(t, testConfig(t, ""), newBus(t))
	alice := c.as(c.register("alice", "streamer").AccessToken)
	bob := c.as(c.register("bob", "viewer").AccessToken)
	var in ingest
	alice.must(201, "POST", "/api/v1/streams", map[string]any{"title": "secret", "visibility": "private"}, &in)
	bob.must(404, "GET", "/api/v1/streams/"+in.ID, nil, nil)
	if r := bob.do("POST", "/api/v1/streams/"+in.ID+"/comments", map[string]string{"body": "let me in"}); r.status != 404 {
		t.Fatalf("stranger commented in a private room: %d %s", r.status, r.body)
	}
	if r := bob.do("POST", "/api/v1/streams/"+in.ID+"/reactions", map[string]string{"emoji": "heart"}); r.status != 404 {
		t.Fatalf("stranger reacted in a private room: %d %s", r.status, r.body)
	}
	alice.must(201, "POST", "/api/v1/streams/"+in.ID+"/comments", map[string]string{"body": "owner may"}, nil)
}
