// Package transcode turns one live source stream into an adaptive-bitrate
// ladder inside the process, through libav (go-astiav): it decodes the
// source's H.264 once, scales it to every rung, encodes each rung with
// libx264 with keyframes aligned across rungs, and publishes each rung back
// into the engine as a rendition ("GROUP/720p"), sharing one AAC audio track.
//
// It also holds AudioBridge, the AAC <-> Opus converter that WebRTC ingest
// and playback use.
package transcode
