#version 330 core
// Dear ImGui draw lists: 2D vertices in display (logical pixel) space, one texture per draw command.
// Vertex layout is ImDrawVert: pos 2f, uv 2f, col 4 normalized bytes (RGBA), 20 bytes a vertex.

#if defined VERTEX_SHADER

uniform mat4 u_projection;  // display rect -> clip space, y down

in vec2 in_position;
in vec2 in_uv;
in vec4 in_color;

out vec2 v_uv;
out vec4 v_color;

void main() {
    v_uv = in_uv;
    v_color = in_color;
    gl_Position = u_projection * vec4(in_position, 0.0, 1.0);
}

#elif defined FRAGMENT_SHADER

uniform sampler2D u_texture;

in vec2 v_uv;
in vec4 v_color;

out vec4 f_color;

void main() {
    f_color = v_color * texture(u_texture, v_uv);
}

#endif
