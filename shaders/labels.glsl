#version 330 core
// Text labels: one screen-aligned quad per glyph, pinned to a world-space anchor and a pixel
// offset from it, so text keeps a constant size on screen.  The glyph atlas (engine/gpu/labels.py)
// has the glyph fill in R and fill + outline in G; text is drawn over a dark halo for legibility.

#if defined VERTEX_SHADER
in vec3 in_anchor;      // world position the label is pinned to
in vec2 in_offset;      // glyph quad's top-left corner from the anchor (pixels, y down)
in vec2 in_glyph_size;  // glyph quad size (pixels)
in vec4 in_uv;          // atlas rectangle: x0, y0, x1, y1 (0..1, y down)
in vec4 in_color;       // text colour (straight alpha)

uniform mat4 u_view_proj;
uniform vec2 u_viewport;  // pixels
uniform float u_scale;    // text size multiplier

out vec2 v_uv;
flat out vec4 v_color;

const vec2 CORNERS[4] = vec2[4](vec2(0.0, 0.0), vec2(1.0, 0.0), vec2(0.0, 1.0), vec2(1.0, 1.0));

void main() {
    vec2 corner = CORNERS[gl_VertexID];
    vec4 clip = u_view_proj * vec4(in_anchor, 1.0);
    if (clip.w <= 0.0) {
        gl_Position = vec4(2.0, 2.0, 2.0, 1.0);  // anchor behind the eye: drop the glyph
        return;
    }
    // Snap the anchor to a pixel so glyphs sample the atlas texel for texel (crisp at scale 1).
    vec2 px = floor((clip.xy / clip.w * 0.5 + 0.5) * u_viewport + 0.5);
    vec2 off = (in_offset + corner * in_glyph_size) * u_scale;
    px += vec2(off.x, -off.y);
    gl_Position = vec4(px / u_viewport * 2.0 - 1.0, clip.z / clip.w, 1.0);
    v_uv = mix(in_uv.xy, in_uv.zw, corner);
    v_color = in_color;
}
#endif

#if defined FRAGMENT_SHADER
uniform sampler2D u_atlas;
uniform vec4 u_outline_color;

in vec2 v_uv;
flat in vec4 v_color;
out vec4 f_color;  // premultiplied alpha

void main() {
    vec2 m = texture(u_atlas, v_uv).rg;
    float halo = m.g * u_outline_color.a * (1.0 - m.r);
    vec3 rgb = v_color.rgb * m.r + u_outline_color.rgb * halo;
    float a = m.r + halo;
    if (a <= 0.0) {
        discard;
    }
    f_color = vec4(rgb, a) * v_color.a;
}
#endif
